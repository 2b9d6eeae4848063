"""Drawing for ``edgecnn live``: boxes, labels with confidence, FPS, latency breakdown, filter view."""
import numpy as np

BOX_COLOR = (0, 200, 0)       # BGR
TEXT_COLOR = (0, 0, 255)
HUD_COLOR = (255, 255, 255)
HUD_BG = (40, 40, 40)
VIEW_FILTERS = (None, "gradient_magnitude", "sobel_x", "sobel_y", "scharr_x", "laplacian8", "sharpen",
                "gaussian", "ink")  # "f" cycles these in the side view; "ink" is the binarizer's input


def to_bgr(frame):
    import cv2
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame.copy()


def draw_detections(img, detections):
    import cv2
    for d in detections:
        x, y, w, h = (int(v) for v in d.box)
        cv2.rectangle(img, (x, y), (x + w, y + h), BOX_COLOR, 2)
        text = f"{d.label} {d.confidence:.2f}"
        ty = y - 6 if y > 18 else y + h + 16
        cv2.putText(img, text, (x, ty), cv2.FONT_HERSHEY_SIMPLEX, 0.55, TEXT_COLOR, 2, cv2.LINE_AA)
    return img


def draw_hud(img, fps, latency, extra=""):
    """FPS and the latency breakdown (ms) in a dark band at the top left."""
    import cv2
    parts = [f"{fps:5.1f} FPS"] + [f"{k} {v:.2f}" for k, v in latency.items()]
    lines = [" | ".join(parts[:3]), " | ".join(parts[3:])]
    if extra:
        lines.append(extra)
    lines = [ln for ln in lines if ln]
    h = 20 * len(lines) + 8
    w = min(img.shape[1], 10 + 8 * max(len(ln) for ln in lines))
    cv2.rectangle(img, (0, 0), (w, h), HUD_BG, -1)
    for i, ln in enumerate(lines):
        cv2.putText(img, ln, (5, 18 + 20 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, HUD_COLOR, 1, cv2.LINE_AA)
    return img


def filter_view(gray, name, ink=None):
    """The side view: the frame through one classic filter (edgecnn.filters), scaled to 0..255."""
    import cv2
    if name is None:
        return None
    if name == "ink":
        v = ink if ink is not None else gray
    else:
        from . import filters
        y = filters.apply(gray if name == "gaussian" else gray.astype(np.float32), name)
        y = np.abs(np.asarray(y, np.float32)) if y.dtype != np.uint8 else y
        if y.dtype != np.uint8:
            m = float(y.max()) or 1.0
            y = (y * (255.0 / m)).astype(np.uint8)
        v = y
    out = cv2.cvtColor(np.ascontiguousarray(v), cv2.COLOR_GRAY2BGR)
    cv2.putText(out, name, (5, out.shape[0] - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2,
                cv2.LINE_AA)
    return out


def compose(annotated, view):
    return annotated if view is None else np.hstack([annotated, view])
