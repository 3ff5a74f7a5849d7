"""Scenario (g) of the fault-and-load suite (scripts/hostile.py): images with boxes (a detection
dataset: boxed uploads and COCO imports) against the release binary.

  g  A detection dataset. Then:
     - 24 hostile requests at once (a box outside its image, an unknown label, a number beyond
       any float, 101 boxes, broken JSON, a COCO category the dataset lacks, a COCO document
       whose sha256 binds another file, boxes sent to the dataset of labelled images): every
       answer a 4xx with a JSON {error, detail}, and nothing stored;
     - 20 identical boxed uploads at once, then 20 identical COCO imports (4 images) at once:
       every image stored once, with its boxes once, every answer the same image ids;
     - 200 stalled requests (a boxed upload cut inside its `boxes` field, a COCO import cut
       inside its document or inside a file, then silence): /health keeps answering in time,
       and the server closes every one within 30 s of its opening;
     - kill -9 during a burst of 8 clients sending boxed uploads and COCO imports: after the
       restart every acknowledged image is there with its bytes and exactly the boxes sent,
       every image of the dataset has its boxes, and the COCO export lists every approved one.
"""

import json

import hostile as h

STALLED = 200
LABELS = ["animals", "food"]
SIDE = 64


def boxes_for(i):
    """A valid set of 1-3 boxes inside a SIDE x SIDE image."""
    return [{"label": LABELS[(i + k) % 2], "bbox": [4 + 3 * k, 5 + 2 * k, 20 + k, 16 + 2 * k]}
            for k in range(1 + i % 3)]


def boxed_request(dataset, data, boxes, name="b.png", admin=False):
    body, ctype = h.multipart({"boxes": boxes if isinstance(boxes, str) else json.dumps(boxes)},
                              [("files", name, data)])
    return ("POST", f"/api/datasets/{dataset}/images", body,
            {"Content-Type": ctype, **(h.ADMIN if admin else {})})


def coco_request(dataset, files, boxes, doc_edit=None):
    """A COCO import of `files` [(name, bytes)], image k boxed with boxes[k]."""
    doc = {
        "images": [{"id": k + 1, "file_name": n, "width": SIDE, "height": SIDE, "sha256": h.sha256(d)}
                   for k, (n, d) in enumerate(files)],
        "annotations": [{"id": 100 * k + j + 1, "image_id": k + 1,
                         "category_id": LABELS.index(b["label"]) + 1, "bbox": b["bbox"]}
                        for k, bs in enumerate(boxes) for j, b in enumerate(bs)],
        "categories": [{"id": i + 1, "name": lab} for i, lab in enumerate(LABELS)],
    }
    if doc_edit:
        doc_edit(doc)
    body, ctype = h.multipart({"annotations": json.dumps(doc)}, [("files", n, d) for n, d in files])
    return ("POST", f"/api/datasets/{dataset}/coco", body, {"Content-Type": ctype, **h.ADMIN})


def clear_error(r):
    body = r.json_or_none()
    return (r.status is not None and 400 <= r.status < 500 and isinstance(body, dict)
            and isinstance(body.get("error"), str) and isinstance(body.get("detail"), str))


def dataset_images(server, dataset):
    """Every image row of `dataset` (with its boxes), by id."""
    rows, offset = {}, 0
    while True:
        page = server.get_json(f"/api/images?dataset={dataset}&limit=500&offset={offset}")
        for row in page["images"]:
            rows[row["id"]] = row
        offset += len(page["images"])
        if not page["images"] or offset >= page["total"]:
            return rows


def hostile_inputs(server, out, dataset):
    before = len(dataset_images(server, dataset))
    png = h.random_png(SIDE)
    other = h.random_png(SIDE)
    good = boxes_for(0)

    def unknown_category(doc):
        doc["categories"][0]["name"] = "boats"

    def other_file(doc):
        doc["images"][0]["sha256"] = h.sha256(other)

    reqs = [
        boxed_request(dataset, png, [{"label": "animals", "bbox": [50, 10, 30, 10]}]),
        boxed_request(dataset, png, [{"label": "boats", "bbox": [5, 5, 10, 10]}]),
        boxed_request(dataset, png, '[{"label": "animals", "bbox": [1e400, 5, 10, 10]}]'),
        boxed_request(dataset, png, [{"label": "animals", "bbox": [1, 1, 5, 5]}] * 101),
        boxed_request(dataset, png, '[{"label": "animals", "bbox": [1, 2, 3'),
        coco_request(dataset, [("a.png", png)], [good], unknown_category),
        coco_request(dataset, [("a.png", png)], [good], other_file),
        boxed_request(h.DATASET, png, good),
    ]
    resps = h.fire_together(server.port, reqs * 3)
    bad = [r for r in resps if not clear_error(r)]
    after = len(dataset_images(server, dataset))
    out.num(f"hostile_boxes={h.histogram(resps)}")
    out.note_odd("hostile boxes", resps, set(range(400, 500)))
    out.check(not bad, f"{len(bad)} of {len(resps)} hostile box requests not a 4xx with a JSON "
                       "{error, detail}")
    out.check(after == before, f"hostile box requests stored {after - before} images")


def identical(server, out, dataset):
    data = h.random_png(SIDE)
    boxes = boxes_for(2)
    resps = h.fire_together(server.port, [boxed_request(dataset, data, boxes)] * 20)
    rows = [r for r in dataset_images(server, dataset).values() if r["sha256"] == h.sha256(data)]
    ids = {(r.json_or_none() or {}).get("images", [{}])[0].get("id") for r in resps}
    created = sum(1 for r in resps if r.status == 201)
    ok = (created == 1 and all(r.status in (200, 201) for r in resps) and len(ids) == 1
          and len(rows) == 1 and rows[0]["boxes"] == boxes)
    files = [(f"c{k}.png", h.random_png(SIDE)) for k in range(4)]
    coco_boxes = [boxes_for(k) for k in range(4)]
    imports = h.fire_together(server.port, [coco_request(dataset, files, coco_boxes)] * 20)
    stored = dataset_images(server, dataset)
    per_file = [[r for r in stored.values() if r["sha256"] == h.sha256(d)] for _, d in files]
    answered = {tuple(i["id"] for i in (r.json_or_none() or {}).get("images", [])) for r in imports}
    coco_ok = (all(r.status in (200, 201) for r in imports) and len(answered) == 1
               and all(len(rs) == 1 for rs in per_file)
               and all(rs[0]["boxes"] == bs for rs, bs in zip(per_file, coco_boxes)))
    out.num(f"identical_boxed={h.histogram(resps)} rows={len(rows)} "
            f"identical_coco={h.histogram(imports)} rows_per_image={[len(rs) for rs in per_file]}")
    out.check(ok, "20 identical boxed uploads did not store one image with its boxes once")
    out.check(coco_ok, "20 identical COCO imports did not store each image once with its boxes")


def stall_payload(dataset, kind):
    boundary = "hostile-stall"
    head = (f"POST /api/datasets/{dataset}/{'coco' if kind != 'boxed' else 'images'} HTTP/1.1\r\n"
            f"Host: 127.0.0.1\r\nAuthorization: Bearer {h.TOKEN}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
            f"Content-Length: {512 * 1024}\r\n\r\n").encode()
    if kind == "boxed":
        return head + (f'--{boundary}\r\nContent-Disposition: form-data; name="boxes"\r\n\r\n'
                       '[{"label": "animals", "bbox": [4, 5, 2').encode()
    doc = f'--{boundary}\r\nContent-Disposition: form-data; name="annotations"\r\n\r\n'.encode()
    if kind == "coco-doc":
        return head + doc + b'{"images": [{"id": 1, "file_name": "a.png", "wid'
    return (head + doc + b'{"images": [], "annotations": [], "categories": []}\r\n'
            + f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.png"\r\n'
              "Content-Type: image/png\r\n\r\n".encode() + h.PNG_SIGNATURE + b"\0" * 4096)


def stalled(server, out, dataset):
    probe = h.HealthProbe(server.port)
    probe.start()
    conns = h.asyncio.run(h.stall_all(server.port, STALLED, kinds=("boxed", "coco-doc", "coco-file"),
                                      payload=lambda kind, _: stall_payload(dataset, kind)))
    probe.stop.set()
    probe.join()
    late = [c for c in conns if h.still_open_at_deadline(c)]
    failed = [c for c in conns if c.opened is None]
    slow = [r for r, t, _ in probe.samples if r.status != 200 or t >= h.HEALTH_LIMIT_S]
    out.num(f"stalled_boxes={STALLED} open_at_30s={len(late)} connect_failed={len(failed)} "
            f"health: n={len(probe.samples)} bad={len(slow)}")
    out.check(not late, f"{len(late)} stalled box requests still open "
                        f"{h.STALL_DEADLINE_S:.0f} s after opening")
    out.check(not failed, f"{len(failed)} connections could not be opened")
    out.check(probe.samples and not slow, f"{len(slow)} health probes not 200 in time")


class BoxedBurst(h.Burst):
    """8 clients sending boxed uploads (odd clients) and 2-image COCO imports (even clients)
    of fresh PNGs until `stop`; records every acknowledged image id with its sha256 and boxes."""

    def __init__(self, server, dataset, clients=8):
        super().__init__(server, LABELS, clients)
        self.dataset = dataset

    def client(self, i):
        n = 0
        while not self.stop.is_set():
            n += 1
            if i % 2:
                files = [(f"k-{i}-{n}.png", h.random_png(SIDE))]
                boxes = [boxes_for(n)]
                req = boxed_request(self.dataset, files[0][1], boxes[0], files[0][0], admin=n % 2 == 0)
            else:
                files = [(f"k-{i}-{n}-{k}.png", h.random_png(SIDE)) for k in range(2)]
                boxes = [boxes_for(n + k) for k in range(2)]
                req = coco_request(self.dataset, files, boxes)
            with self.lock:
                self.in_flight += 1
            r = h.request(self.server.port, *req, timeout=30)
            with self.lock:
                self.in_flight -= 1
                self.statuses.append(r)
                body = r.json_or_none() if r.status in (200, 201) else None
                sent = {h.sha256(d): bs for (_, d), bs in zip(files, boxes)}
                for img in (body or {}).get("images", []):
                    self.acked[img["id"]] = (img["sha256"], sent.get(img["sha256"]))


def killed(server, out, dataset):
    burst = BoxedBurst(server, dataset)
    in_flight = burst.run_then_kill(1.5)
    server.start()
    rows = dataset_images(server, dataset)
    missing = [i for i, (sha, boxes) in burst.acked.items()
               if i not in rows or rows[i]["sha256"] != sha or rows[i]["boxes"] != boxes
               or not h.blob_matches(server, i, sha)]
    unboxed = [i for i, r in rows.items() if not r["boxes"]]
    approved = {r["sha256"] for r in rows.values() if r["status"] == "approved"}
    doc = server.get_json(f"/api/datasets/{dataset}/coco")
    exported = {im["sha256"] for im in doc["images"]}
    out.num(f"burst={h.histogram(burst.statuses)} in_flight_at_kill={in_flight} "
            f"acknowledged={len(burst.acked)} rows={len(rows)} missing={len(missing)} "
            f"without_boxes={len(unboxed)} exported={len(exported)}/{len(approved)}")
    out.note_odd("boxed burst", [r for r in burst.statuses if r.status is not None], {200, 201})
    out.check(burst.acked, "no boxed upload or import was acknowledged before the kill")
    out.check(not missing, f"{len(missing)} acknowledged images missing, with other bytes or "
                           "other boxes after the restart")
    out.check(not unboxed, f"{len(unboxed)} images of the detection dataset without their boxes")
    out.check(exported == approved, "the COCO export does not list exactly the approved images")


def scenario_g(server, out):
    r = server.post_json("/api/datasets", {"name": "objects", "labels": LABELS, "task": "detect"})
    if not out.check(r.status == 201, f"creating the detection dataset answered {r.key()}"):
        return
    dataset = r.json()["id"]
    hostile_inputs(server, out, dataset)
    identical(server, out, dataset)
    stalled(server, out, dataset)
    out.check(server.alive(), "the api died")
    killed(server, out, dataset)
