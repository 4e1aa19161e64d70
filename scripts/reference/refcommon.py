"""Box helpers shared by the reference scripts (plain Python, no numpy needed)."""


def iou(a, b):
    """Intersection over union of two [x1, y1, x2, y2] boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def nms_per_class(cands, iou_threshold):
    """Class-aware NMS over dicts with class_id, score, bbox. Score descending; ties by
    class, then x1, then y1 (the order Argus uses)."""
    cands = sorted(cands, key=lambda c: (-c["score"], c["class_id"], c["bbox"][0], c["bbox"][1]))
    kept = []
    for c in cands:
        if all(k["class_id"] != c["class_id"] or iou(k["bbox"], c["bbox"]) <= iou_threshold for k in kept):
            kept.append(c)
    return kept
