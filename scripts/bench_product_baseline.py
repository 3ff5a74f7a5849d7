"""The seed-style baseline of product classification, on the trainer's own split.

TF-IDF (words, 1-2 grams, sublinear tf) + a linear SVM (scikit-learn `LinearSVC`), fitted on
the training items, its C chosen on the validation items by weighted F1, scored on the test
items the trainer scored (`metrics.json`: `splits`). Two texts: the title alone, and the title
with its keywords (what the trainer's text tower reads). The model's own figures are
recomputed here with scikit-learn from its recorded predictions, as a cross-check of the
trainer's metrics.

Usage: bench_product_baseline.py ITEMS_JSONL METRICS_JSON
"""
import json
import sys

from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics import accuracy_score, f1_score
from sklearn.svm import LinearSVC


def main(items_path, metrics_path):
    items = {}
    with open(items_path) as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                items[f"{items_path}:{n}"] = json.loads(line)
    report = json.load(open(metrics_path))
    splits = report["splits"]

    def rows(names):
        return [items[s] for s in names]

    train, val, test = rows(splits["train"]), rows(splits["val"]), rows(splits["test"])
    y_test = [i["category"] for i in test]
    out = {"n_train": len(train), "n_val": len(val), "n_test": len(test), "baseline": {}}

    def both(i):
        return (i["title"] + " " + i.get("text", "")).strip()

    def title(i):
        return i["title"]

    for name, text in [("title", title), ("title + keywords", both)]:
        best = None
        for c in [0.03, 0.1, 0.3, 1.0, 3.0, 10.0]:
            vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)
            x = vec.fit_transform([text(i) for i in train])
            svm = LinearSVC(C=c).fit(x, [i["category"] for i in train])
            val_pred = svm.predict(vec.transform([text(i) for i in val]))
            f1 = f1_score([i["category"] for i in val], val_pred, average="weighted")
            if best is None or f1 > best[0]:
                best = (f1, c, vec, svm)
        _, c, vec, svm = best
        pred = svm.predict(vec.transform([text(i) for i in test]))
        out["baseline"][name] = {
            "C": c,
            "accuracy": accuracy_score(y_test, pred),
            "weighted_f1": f1_score(y_test, pred, average="weighted"),
            "macro_f1": f1_score(y_test, pred, average="macro"),
            "per_class_f1": dict(zip(report["labels"], f1_score(y_test, pred, average=None, labels=report["labels"]).tolist())),
        }
    model = {}
    for k, name in enumerate(["text", "image", "both"]):
        pred = [p[k] for p in splits["predicted"]]
        model[name] = {
            "accuracy": accuracy_score(y_test, pred),
            "weighted_f1": f1_score(y_test, pred, average="weighted"),
            "macro_f1": f1_score(y_test, pred, average="macro"),
            "per_class_f1": dict(zip(report["labels"], f1_score(y_test, pred, average=None, labels=report["labels"]).tolist())),
        }
        ours = report["test"][name]["weighted_f1"]
        if abs(ours - model[name]["weighted_f1"]) > 1e-9:
            sys.exit(f"trainer's weighted F1 ({name}) {ours} != scikit-learn's {model[name]['weighted_f1']}")
    out["model"] = model
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
