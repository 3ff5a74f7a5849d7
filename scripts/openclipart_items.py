"""Build the bundled product dataset from Debian's Open Clip Art SVGs (called by fetch-assets.sh).

Each drawing becomes one item of `items.jsonl` (the product import format): its title
(`<dc:title>` of the work), its keywords as `text` (`<dc:subject>` entries), its SVG as `image`
(rendered by the trainer with resvg) and its top-level folder as `category`.

What is dropped, and why:
- folders `unsorted` (not a category) and `special` (gradient swatches, fill patterns, print
  templates: not things), and folders with fewer than MIN_ITEMS drawings (too few to learn or
  test: buildings 70, education 54, electronics 43, decorations 26, science 21, containers 16,
  logos 7, buttons 3; plants has 95);
- byte-identical copies of a drawing (the same file filed twice): the first path in sorted
  order is kept;
- keywords made only of the words of the category's own name ("food", "shapes",
  "signs_and_symbols", "symbol"): the uploaders tagged drawings with the folder they filed them
  in, so such a keyword is the label written into the input. Titles are kept as written;
- beyond MAX_ITEMS per category, the drawings with the highest sha256: the big folders are
  one collection repeated (1,375 of the 1,645 `shapes` are star polygons titled "gramastar",
  most of `computer` is three icon themes), so a cap keeps the classes comparable in size.

Usage: openclipart_items.py SVG_ROOT OUT_DIR
"""
import hashlib
import json
import os
import re
import shutil
import sys
import xml.etree.ElementTree as ET

MIN_ITEMS = 100
MAX_ITEMS = 400
SKIP = {"unsorted", "special"}
NS = {
    "dc": "http://purl.org/dc/elements/1.1/",
    "cc": "http://web.resource.org/cc/",
    "cc2": "http://creativecommons.org/ns#",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
}


def words(text):
    """Lower-case words with a plural -s folded (the rule of the shared tokenizer, words-v1)."""
    out = []
    for w in re.split(r"[^0-9a-z]+", text.lower()):
        if not w:
            continue
        if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
            w = w[:-1]
        out.append(w)
    return out


def metadata(data):
    """(title, keywords) of an Open Clip Art SVG; empty when it has none or does not parse."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return None
    for cc in ("cc", "cc2"):
        work = root.find(f".//{{{NS[cc]}}}Work")
        if work is not None:
            break
    else:
        work = root
    title = work.find("dc:title", NS)
    title = " ".join((title.text or "").split()) if title is not None else ""
    keywords = []
    subject = work.find("dc:subject", NS)
    if subject is not None:
        for li in subject.iter(f"{{{NS['rdf']}}}li"):
            k = " ".join((li.text or "").split())
            if k and k not in keywords:
                keywords.append(k)
    return title, keywords


def main(svg_root, out_dir):
    by_category = {}
    seen = set()
    for dirpath, dirnames, files in os.walk(svg_root):
        dirnames.sort()
        for name in sorted(files):
            if not name.endswith(".svg"):
                continue
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, svg_root)
            category = rel.split(os.sep)[0]
            if category in SKIP or os.sep not in rel:
                continue
            data = open(path, "rb").read()
            sha = hashlib.sha256(data).hexdigest()
            if sha in seen:
                continue
            seen.add(sha)
            by_category.setdefault(category, []).append((sha, rel, data))
    items = []
    for category, drawings in sorted(by_category.items()):
        if len(drawings) < MIN_ITEMS:
            continue
        own = set(words(category.replace("_", " ")))
        drawings.sort()
        for sha, rel, data in drawings[:MAX_ITEMS]:
            meta = metadata(data)
            if meta is None:
                continue
            title, keywords = meta
            keywords = [k for k in keywords if not set(words(k)) <= own]
            dest = os.path.join(out_dir, "svg", rel)
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            shutil.copyfile(os.path.join(svg_root, rel), dest)
            items.append({
                "title": title,
                "text": ", ".join(keywords),
                "image": "svg/" + rel.replace(os.sep, "/"),
                "category": category,
            })
    with open(os.path.join(out_dir, "items.jsonl"), "w") as f:
        for item in items:
            f.write(json.dumps(item, ensure_ascii=False) + "\n")
    counts = {}
    for item in items:
        counts[item["category"]] = counts.get(item["category"], 0) + 1
    print(f"openclipart: {len(items)} items in {len(counts)} categories: "
          + ", ".join(f"{c} {n}" for c, n in sorted(counts.items(), key=lambda x: -x[1])))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
