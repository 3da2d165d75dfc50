"""RUN_DIR/report.html: one self-contained page a person reads after a run.

Learning curves (inline SVG, the unfreeze point marked), per-class
precision and recall, the confusion matrix, the validation images the model
gets most wrong (true and predicted class, confidence) and the settings.
Images are PNG data URIs; a Content-Security-Policy forbids every request,
so the page works offline, from a file, and cannot reach the network. No
plotting library is needed.

Grad-CAM: `write_report(..., overlays=)` takes one RGB image per mistake
(the same size as the mistake) and shows it beside the image;
`finish.grad_cam_overlays` computes them with `resnet_keras.explain`.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Sequence

import numpy as np

# Up to this many classes the confusion matrix is drawn as a table; above,
# the most frequent confusions are listed instead.
MAX_MATRIX_CLASSES = 40
THUMBNAIL = 128

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ddd;padding:2px 6px;text-align:right}
th{background:#f4f4f4}td.name,th.name{text-align:left}.summary td{text-align:left}
.mistakes{display:flex;flex-wrap:wrap;gap:12px}.mistake{width:%dpx;font-size:.75em;word-wrap:break-word}
svg.chart{margin-right:16px;font-family:inherit}
.mistake img{width:%dpx;height:%dpx;image-rendering:pixelated;border:1px solid #ccc}
""" % (THUMBNAIL * 2 + 8, THUMBNAIL, THUMBNAIL)


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def png_data_uri(pixels: np.ndarray, size: int | None = THUMBNAIL) -> str:
    """An RGB array (height, width, 3) in [0, 255] as a PNG data URI, scaled to `size`."""
    from PIL import Image

    image = Image.fromarray(np.clip(np.asarray(pixels), 0, 255).astype(np.uint8), "RGB")
    if size:
        image = image.resize((size, size), Image.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _chart(title: str, epochs: Sequence[int], series: Sequence[tuple[str, Sequence[float], str]],
           unfreeze_epochs: Sequence[int]) -> str:
    """One inline SVG line chart: x = epoch (1-based), a dashed line before each unfreeze epoch."""
    width, height, left, right, top, bottom = 460, 280, 52, 12, 48, 40
    values = [v for _, ys, _ in series for v in ys if v is not None and np.isfinite(v)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high - low < 1e-9:
        low, high = low - 0.5, high + 0.5
    first, last = min(epochs), max(max(epochs), min(epochs) + 1)

    def x(epoch):
        return left + (epoch - first) / (last - first) * (width - left - right)

    def y(value):
        return top + (high - value) / (high - low) * (height - top - bottom)

    parts = [f"<svg class=chart role=img aria-label='{_e(title)}' width={width} height={height} "
             f"viewBox='0 0 {width} {height}' xmlns='http://www.w3.org/2000/svg'>",
             f"<text x={width / 2} y=18 text-anchor=middle font-weight=bold>{_e(title)}</text>",
             f"<rect x={left} y={top} width={width - left - right} height={height - top - bottom} "
             "fill=none stroke='#999'/>"]
    for value in np.linspace(low, high, 5):
        parts.append(f"<text x={left - 4} y={y(value) + 4:.1f} text-anchor=end font-size=10>{value:.3g}</text>")
    for epoch in sorted(set(epochs)):
        parts.append(f"<text x={x(epoch):.1f} y={height - bottom + 14} text-anchor=middle font-size=10>"
                     f"{epoch}</text>")
    parts.append(f"<text x={width / 2} y={height - 6} text-anchor=middle font-size=11>epoch</text>")
    for epoch in unfreeze_epochs:  # 0-based epoch e is plotted at e + 1
        position = x(epoch + 0.5)
        parts.append(f"<line class=unfreeze x1={position:.1f} x2={position:.1f} y1={top} y2={height - bottom} "
                     "stroke='#555' stroke-dasharray='5 4'/>"
                     f"<text x={position + 3:.1f} y={top + 12} font-size=10 fill='#555'>unfreeze</text>")
    for row, (label, ys, color) in enumerate(series):
        points = " ".join(f"{x(e):.1f},{y(v):.1f}" for e, v in zip(epochs, ys) if v is not None)
        parts.append(f"<polyline fill=none stroke='{color}' stroke-width=2 points='{points}'/>")
        parts += [f"<circle cx={x(e):.1f} cy={y(v):.1f} r=3 fill='{color}'/>"
                  for e, v in zip(epochs, ys) if v is not None]
        parts.append(f"<text x={left + 150 * row} y={top - 8} font-size=10 fill='{color}'>"
                     f"&#9632; {_e(label)}</text>")
    return "".join(parts) + "</svg>"


def learning_curves(history: Sequence[dict], unfreeze_epochs: Sequence[int]) -> str:
    """Loss and accuracy per epoch, two inline SVG charts; a dashed line before each epoch
    (0-based, in `unfreeze_epochs`) that trains more groups than the one before."""
    epochs = [h["epoch"] + 1 for h in history]
    has_val = any("val_top1" in h for h in history)
    charts = []
    for title, train_key, val_key, val_label in (("loss", "loss", "val_loss", "validation loss"),
                                                 ("accuracy", "accuracy", "val_top1", "validation top-1")):
        series = [(f"training {title}", [h[train_key] for h in history], "#1f5fbf")]
        if has_val:
            series.append((val_label, [h.get(val_key) for h in history], "#d9541e"))
        charts.append(_chart(title, epochs, series, unfreeze_epochs))
    return f"<div id=curves>{''.join(charts)}</div>"


def _per_class(validation: dict) -> str:
    def cell(value):
        return "n/a" if value is None else f"{value:.3f}"

    rows = "".join(
        f"<tr><td class=name>{_e(c['name'])}</td><td>{c['support']}</td><td>{cell(c['precision'])}</td>"
        f"<td>{cell(c['recall'])}</td></tr>" for c in validation["per_class"])
    return (f"<table id=per-class><tr><th class=name>class</th><th>images</th><th>precision</th>"
            f"<th>recall</th></tr>{rows}</table>")


def _confusion(validation: dict, class_names: Sequence[str]) -> str:
    matrix = np.asarray(validation["confusion"])
    if len(class_names) > MAX_MATRIX_CLASSES:
        pairs = [(matrix[i, j], i, j) for i, j in zip(*np.nonzero(matrix)) if i != j]
        rows = "".join(f"<tr><td class=name>{_e(class_names[i])}</td><td class=name>{_e(class_names[j])}</td>"
                       f"<td>{n}</td></tr>" for n, i, j in sorted(pairs, reverse=True)[:30])
        return (f"<p>{len(class_names)} classes: the most frequent confusions.</p><table id=confusion>"
                f"<tr><th class=name>true</th><th class=name>predicted</th><th>images</th></tr>{rows}</table>")
    totals = np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    header = "".join(f"<th>{_e(name)}</th>" for name in class_names)
    body = ""
    for i, name in enumerate(class_names):
        shares = matrix[i] / totals[i, 0]
        cells = "".join(
            f"<td style='background:rgba(40,90,200,{share:.2f});color:{'#fff' if share > 0.5 else '#222'}'>"
            f"{count}</td>" for count, share in zip(matrix[i], shares))
        body += f"<tr><th class=name>{_e(name)}</th>{cells}</tr>"
    return (f"<p>Rows: true class; columns: predicted class.</p><table id=confusion>"
            f"<tr><th class=name>true \\ predicted</th>{header}</tr>{body}</table>")


def _mistakes(mistakes: Sequence[dict], overlays: Sequence[np.ndarray] | None) -> str:
    if not mistakes:
        return "<p>No validation image is misclassified.</p>"
    cards = []
    for i, m in enumerate(mistakes):
        images = f"<img alt='validation image' src='{png_data_uri(m['pixels'])}'>"
        if overlays is not None:
            images += f"<img alt='Grad-CAM' class=overlay src='{png_data_uri(overlays[i])}'>"
        cards.append(
            f"<div class=mistake>{images}<br><b>true:</b> {_e(m['true'])}<br><b>predicted:</b> "
            f"{_e(m['predicted'])} ({m['confidence']:.2f})<br><span>{_e(m['name'])}</span></div>")
    return f"<div class=mistakes id=mistakes>{''.join(cards)}</div>"


def write_report(path: Path, *, title: str, summary: Sequence[tuple[str, str]], history: Sequence[dict],
                 unfreeze_epochs: Sequence[int], validation: dict, class_names: Sequence[str],
                 mistakes: Sequence[dict], settings: dict, overlays: Sequence[np.ndarray] | None = None) -> None:
    """Write the page to `path` (atomically).

    `mistakes`: dicts with pixels (RGB array), name, true, predicted, confidence.
    """
    from .rundir import write_text

    facts = "".join(f"<tr><th class=name>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in summary)
    settings_rows = "".join(f"<tr><th class=name>{_e(k)}</th><td class=name>{_e(v)}</td></tr>"
                            for k, v in settings.items())
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">",
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1><table class=summary id=summary>{facts}</table>",
        "<h2>Learning curves</h2>",
        learning_curves(history, unfreeze_epochs) if history else "<p>No epoch was trained.</p>",
    ]
    if validation:
        parts += ["<h2>Per class (validation)</h2>", _per_class(validation),
                  "<h2>Confusion matrix (validation)</h2>", _confusion(validation, class_names),
                  "<h2>Most confident mistakes (validation)</h2>", _mistakes(mistakes, overlays)]
    else:
        parts.append("<p>No validation images: no per-class metrics, confusion matrix or mistakes.</p>")
    parts += ["<h2>Settings</h2>", f"<table id=settings>{settings_rows}</table>", "</body></html>"]
    text = "\n".join(parts)
    write_text(path, text)
