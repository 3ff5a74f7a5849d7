"""Scenario (f) of the fault-and-load suite (scripts/hostile.py): product classification
(`task=product`) against the release binary.

  f  A product champion trained on the seed photos (their captions as titles). Then:
     - 28 hostile predictions at once (control characters, a 600-character title, a 4 KB
       title field, neither title nor image, k=0, a text file as the image, an unknown task):
       every answer a 4xx with a JSON {error, detail}, no 5xx, no dropped connection;
     - 200 stalled product predictions (the title part cut mid-word, or the title then an
       image cut mid-file, then silence): /health keeps answering in time, and the server
       closes every one within 30 s of its opening;
     - bursts of 20 predictions (title only; title + photo) while a product retrain runs and
       registers, then while the new version is promoted and rolled back in turn (6 switches):
       every answer 200, both versions answering, and answers from the same model version to
       the same input identical to 1e-5; after it, exactly one product champion, no classifier touched, and
       every product version's gate consistent with the evidence its metrics.json publishes
       (its figure the weighted F1 recomputed here, in Python, from the recorded labels).
"""

import json
import os
import time

import hostile as h

STALLED = 200


def product_request(title=None, photo=None, query="task=product&k=3"):
    fields = {} if title is None else {"title": title}
    files = [] if photo is None else [("file", "photo.png", photo)]
    body, ctype = h.multipart(fields, files)
    return ("POST", f"/api/predict?{query}", body, {"Content-Type": ctype})


def weighted_f1(truth, predicted):
    """scikit-learn's f1_score(average="weighted"), written out."""
    labels = set(truth) | set(predicted)
    total = 0.0
    for c in labels:
        tp = sum(1 for t, p in zip(truth, predicted) if t == p == c)
        support = sum(1 for t in truth if t == c)
        pred = sum(1 for p in predicted if p == c)
        if support:
            total += support * 2 * tp / (support + pred)
    return total / len(truth) if truth else 0.0


def clear_error(r):
    body = r.json_or_none()
    return (r.status is not None and 400 <= r.status < 500 and isinstance(body, dict)
            and isinstance(body.get("error"), str) and isinstance(body.get("detail"), str))


def hostile_inputs(server, out, photo):
    body, ctype = h.multipart({"title": "a red car"}, [("file", "notes.txt", b"not an image")])
    reqs = [
        product_request("a red\x07car"),
        product_request("x" * 600),
        product_request("y" * 4096),
        product_request(),
        product_request("a red car", query="task=product&k=0"),
        ("POST", "/api/predict?task=product", body, {"Content-Type": ctype}),
        product_request("a red car", photo, query="task=detect&k=3"),
    ]
    resps = h.fire_together(server.port, reqs * 4)
    bad = [r for r in resps if not clear_error(r)]
    out.num(f"hostile_inputs={h.histogram(resps)}")
    out.note_odd("hostile input", resps, set(range(400, 500)))
    out.check(not bad, f"{len(bad)} of {len(resps)} hostile product predictions not a 4xx "
                       "with a JSON {error, detail}")
    # Twenty admins asking at once for a detector on the dataset of labelled images (detectors
    # train on a detection dataset's boxes): each a 422 that says so, and no run is queued.
    runs = len(server.get_json("/api/train"))
    train = json.dumps({"dataset_id": h.DATASET, "task": "detect"}).encode()
    post = ("POST", "/api/train", train, {"Content-Type": "application/json", **h.ADMIN})
    resps = h.fire_together(server.port, [post] * 20)
    refused = [r for r in resps
               if r.status == 422 and clear_error(r)
               and "holds labelled images, not boxes" in r.json()["detail"]]
    out.num(f"detect_train={h.histogram(resps)}")
    out.check(len(refused) == 20, f"{20 - len(refused)} of 20 detection trainings not a 422 "
                                  "saying why")
    out.check(len(server.get_json("/api/train")) == runs, "a refused detection run was queued")


def stalled(server, out):
    probe = h.HealthProbe(server.port)
    probe.start()
    conns = h.asyncio.run(h.stall_all(server.port, STALLED, kinds=h.PRODUCT_STALL_KINDS))
    probe.stop.set()
    probe.join()
    late = [c for c in conns if h.still_open_at_deadline(c)]
    failed = [c for c in conns if c.opened is None]
    slow = [(r, t) for r, t, _ in probe.samples if r.status != 200 or t >= h.HEALTH_LIMIT_S]
    out.num(f"stalled_product={STALLED} open_at_30s={len(late)} connect_failed={len(failed)} "
            f"health: n={len(probe.samples)} bad={len(slow)}")
    out.check(not late, f"{len(late)} stalled product predictions still open "
                        f"{h.STALL_DEADLINE_S:.0f} s after opening")
    out.check(not failed, f"{len(failed)} connections could not be opened")
    out.check(probe.samples and not slow, f"{len(slow)} health probes not 200 in time")


def burst_during_retrain(server, out, title, photo):
    r = server.post_json("/api/train", {"dataset_id": h.DATASET, "task": "product",
                                        "params": {"epochs": 40, "seed": 9}})
    out.check(r.status == 202, f"product retrain answered {r.key()}")
    if r.status != 202:
        return
    run_id = r.json()["id"]
    reqs = [product_request(title)] * 10 + [product_request(title, photo)] * 10
    answers, rounds = [], 0
    while True:
        status = server.get_json(f"/api/train/{run_id}")["status"]
        got = h.fire_together(server.port, reqs, timeout=120)
        answers += [(i % 20 >= 10, r) for i, r in enumerate(got)]
        rounds += 1
        if status not in ("queued", "running"):
            break
    run = h.wait_run(server, run_id)
    # Then the champion switched under load: the new version promoted by hand and rolled back
    # in turn, from another thread, while the bursts go on; it ends promoted.
    old = server.get_json("/api/models/current?task=product")["model_id"]
    new = run.get("model_id")
    switches = []

    def switch():
        for k in range(6):
            target = new if k % 2 == 0 else old
            r = server.post_json(f"/api/models/{target}/promote", {})
            switches.append(r.status)
            time.sleep(0.3)

    if new and new != old:
        flipper = h.threading.Thread(target=switch, daemon=True)
        flipper.start()
        while flipper.is_alive():
            got = h.fire_together(server.port, reqs, timeout=120)
            answers += [(i % 20 >= 10, r) for i, r in enumerate(got)]
            rounds += 1
        flipper.join()
        server.post_json(f"/api/models/{new}/promote", {})
    ok = [(kind, r.json()) for kind, r in answers if r.status == 200]
    groups = {}
    for kind, a in ok:
        groups.setdefault((kind, a["model_id"]), []).append(
            [(p["label"], p["score"]) for p in a["predictions"]])
    same = all(
        all([l for l, _ in p] == [l for l, _ in ps[0]]
            and all(abs(x - y) <= 1e-5 for (_, x), (_, y) in zip(p, ps[0])) for p in ps)
        for ps in groups.values())
    versions = sorted({m for _, m in groups})
    out.num(f"retrain={run['status']} rounds={rounds} predictions={h.histogram([r for _, r in answers])} "
            f"champion_switches={switches} versions_answering={len(versions)} "
            f"same_answer_per_version={same}")
    out.note_odd("predict during retrain", [r for _, r in answers], {200})
    out.check(run["status"] == "succeeded", f"product retrain {run['status']}: {run.get('error')}")
    out.check(len(ok) == len(answers), f"{len(answers) - len(ok)} of {len(answers)} predictions "
                                       "during the retrain not 200")
    out.check(same, "one model version gave different answers to the same input")
    out.check(switches == [200] * 6, f"champion switches answered {switches}")
    out.check(len(versions) == 2, f"{len(versions)} model versions answered across the switches")


def registry_consistent(server, out):
    models = server.get_json("/api/models?task=product&limit=50")
    champions = [m["id"] for m in models if m["stage"] == "champion"]
    classifiers = server.get_json("/api/models?task=classify&limit=50")
    consistent = 0
    for m in models:
        gate = m["gate"]
        ev = server.get_json(f"/api/models/{m['id']}/metrics.json")["evidence"]
        f1 = weighted_f1(ev["truth"], ev["candidate"]["predicted"])
        consistent += (gate["metric"] == ev["metric"] == "weighted_f1"
                       and gate.get("n") == len(ev["items"]) == len(ev["truth"])
                       and abs(gate["candidate"] - f1) < 1e-9
                       and gate.get("verdict") in ("promote", "inconclusive", "reject")
                       and gate["promote"] == (gate.get("verdict") == "promote"))
    out.num(f"product_versions={len(models)} champions={len(champions)} "
            f"gate_consistent={consistent}/{len(models)} classifiers={len(classifiers)}")
    out.check(len(champions) == 1, f"{len(champions)} product champions")
    out.check(consistent == len(models), f"{len(models) - consistent} product gates disagree "
                                         "with their evidence")
    out.check(not classifiers, "a product run registered a classifier")


def scenario_f(server, out):
    t0 = time.time()
    champion = h.train_champion(server, "product", {"epochs": 20})
    h.log(f"product champion {champion['model_id']} ready after {time.time() - t0:.0f} s")
    src = os.path.join(h.ROOT, "assets/datasets/tuxpaint-photos")
    label = sorted(d for d in os.listdir(src) if os.path.isdir(os.path.join(src, d)))[0]
    name = sorted(p for p in os.listdir(os.path.join(src, label)) if p.endswith(".png"))[0]
    with open(os.path.join(src, label, name), "rb") as f:
        photo = f.read()
    hostile_inputs(server, out, photo)
    stalled(server, out)
    out.check(server.alive(), "the api died")
    burst_during_retrain(server, out, "a small brown animal", photo)
    registry_consistent(server, out)
    out.check(server.alive(), "the api died")
