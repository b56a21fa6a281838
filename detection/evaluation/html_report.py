"""``index.html``: one static page a person reads, next to the evaluation's files.

Self-contained: inline CSS and a few lines of inline JavaScript (click a column header of the
per-class table to sort it), no fonts or scripts from elsewhere; the images are the PNG/JPEG
files of the same folder, linked relatively, so the page opens from the file system. Every
string that comes from a user's file (class names, paths) is escaped.
"""

from __future__ import annotations

import html
import math
import os

from detection.utils.io import write_text

from .error_types import BKG, BOTH, CLS, DUP, ERROR_TYPES, LOC, TP
from .worst_images import FOUND, MISSED, OUTCOME_COLORS

__all__ = ["write_html_report"]

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5em auto;max-width:1200px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:right}th{background:#f3f3f3}
td:first-child,th:first-child{text-align:left}
table.sortable th{cursor:pointer}table.sortable th:hover{background:#e4e4e4}
.headline td{font-size:1.1em}.big{font-size:1.6em;font-weight:bold}
img{max-width:100%;border:1px solid #eee}.row{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start}
.row>a{flex:1 1 0;min-width:320px}.row img{width:100%}.grid{display:flex;flex-wrap:wrap;gap:8px}
.grid figure{margin:0;width:280px}.grid figcaption{font-size:.8em}
.swatch{display:inline-block;width:1em;height:1em;vertical-align:middle;margin:0 .3em 0 .8em}
.note{color:#555;font-size:.85em}
"""

_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var asc = th.getAttribute("data-order") !== "asc";
      th.setAttribute("data-order", asc ? "asc" : "desc");
      rows.sort(function (a, b) {
        var x = a.cells[col].getAttribute("data-v"), y = b.cells[col].getAttribute("data-v");
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
        return asc ? c : -c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _e(s) -> str:
    return html.escape(str(s), quote=True)


def _num(v, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "&ndash;"
    if isinstance(v, int):
        return str(v)
    return f"{v:.{digits}f}"


def _cell(v, digits: int = 1) -> str:
    missing = v is None or (isinstance(v, float) and math.isnan(v))
    return f'<td data-v="{"" if missing else _e(v)}">{_num(v, digits)}</td>'


def _image(folder: str, name: str, alt: str) -> str:
    if not os.path.exists(os.path.join(folder, name)):
        return f'<p class="note">({_e(name)} was not drawn)</p>'
    return f'<a href="{_e(name)}"><img src="{_e(name)}" alt="{_e(alt)}"></a>'


def _swatch(bgr, label: str) -> str:
    b, g, r = bgr
    return f'<span class="swatch" style="background:rgb({r},{g},{b})"></span>{_e(label)}'


def _class_table(metrics: dict, class_names: list[str], thresholds) -> str:
    head = ["class", "#gt", "#det", "AP50", "AP", "VOC AP50", "best F1", "at score", "P", "R", "drawn at"]
    head += [t for t in ERROR_TYPES]
    rows = []
    for name, t in zip(class_names, thresholds):
        voc = metrics.get("per_class_VOC", {}).get(name, {})
        f1 = metrics.get("per_class_best_f1", {}).get(name, {})
        err = metrics.get("per_class_errors", {}).get(name, {}).get("counts", {})
        cells = [f'<td data-v="{_e(name)}">{_e(name)}</td>', _cell(voc.get("num_gt")), _cell(voc.get("num_det")),
                 _cell(metrics.get("per_class_AP50", {}).get(name)), _cell(metrics.get("per_class_AP", {}).get(name)),
                 _cell(voc.get("AP50")), _cell(f1.get("best_f1")), _cell(f1.get("best_f1_score_thresh"), 3),
                 _cell(f1.get("precision")), _cell(f1.get("recall")), _cell(float(t), 3)]
        cells += [_cell(err.get(k)) for k in ERROR_TYPES]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return ('<div style="overflow-x:auto"><table class="sortable" id="per-class"><thead><tr>'
            + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>" + "\n".join(rows)
            + "</tbody></table></div>")


def _headline(metrics: dict) -> str:
    items = [("mAP@0.5 (COCO AP50)", metrics.get("AP50")), ("COCO AP", metrics.get("AP")),
             ("AP75", metrics.get("AP75")), ("VOC07 mAP@0.5", metrics.get("VOC07_mAP50")),
             ("VOC mAP@0.5", metrics.get("VOC_mAP50")), ("best F1 (all classes)", metrics.get("best_f1")),
             ("best-F1 score threshold", metrics.get("best_f1_score_thresh")),
             ("images", metrics.get("num_images")), ("detections", metrics.get("num_detections"))]
    cells = "".join(f"<tr><td>{_e(k)}</td><td class=\"big\">{_num(v, 3 if 'threshold' in k else 2)}</td></tr>"
                    for k, v in items)
    return f'<table class="headline">{cells}</table>'


def _errors(metrics: dict) -> str:
    err = metrics.get("errors", {})
    rows = "".join(f"<tr><td>{_e(t)}</td>{_cell(err.get('counts', {}).get(t))}"
                   f"{_cell(err.get('AP50_gain', {}).get(t), 2)}</tr>" for t in ERROR_TYPES)
    return ('<table id="errors"><thead><tr><th>error type</th><th>count</th><th>mAP@0.5 gained by fixing it</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>")


def _worst(folder: str, worst: list[dict]) -> str:
    if not worst:
        return '<p class="note">No image drawn (image files unknown or unreadable, or plots off).</p>'
    legend = "".join(_swatch(OUTCOME_COLORS[c], n) for c, n in (
        (TP, "true positive"), (CLS, "classification (cls)"), (LOC, "localization (loc)"), (BOTH, "both"),
        (DUP, "duplicate (dup)"), (BKG, "background (bkg)"))) + _swatch(MISSED, "missed") + _swatch(FOUND, "found ground truth")
    parts = [f"<p>{legend}</p>", _image(folder, "worst/contact_sheet.jpg", "contact sheet of the worst images"),
             '<div class="grid">']
    for w in worst:
        src = "worst/" + w["file"]
        cap = (f"image {_e(w['image_id'])}: {w['false_positives']} false positives, {w['missed']} missed"
               f"<br>{_e(os.path.basename(w.get('source', '')))}")
        parts.append(f'<figure><a href="{_e(src)}"><img src="{_e(src)}" alt="image {_e(w["image_id"])}"></a>'
                     f"<figcaption>{cap}</figcaption></figure>")
    parts.append("</div>")
    return "\n".join(parts)


def write_html_report(path: str, metrics: dict, class_names: list[str], thresholds, iou_threshold: float,
                      worst: list[dict], title: str | None = None) -> None:
    """Write the page (sections: headline, per-class table, curves, confusion matrix, error
    breakdown, worst images). Images of the page's folder that are missing are noted, not linked."""
    folder = os.path.dirname(os.path.abspath(path))
    title = title or f"Detection evaluation: {os.path.basename(folder)}"
    body = f"""<h1>{_e(title)}</h1>
{_headline(metrics)}
<h2>Per class</h2>
<p class="note">AP50/AP: COCOeval; VOC AP50: VOC area rule; best F1 (%) and its score threshold at IoU 0.5;
"drawn at": the score threshold of the confusion matrix and the drawings; error counts as in the breakdown
below. Click a header to sort.</p>
{_class_table(metrics, class_names, thresholds)}
<h2>Curves</h2>
{_image(folder, "f1_curves.png", "precision, recall and F1 against score")}
<div class="row">{_image(folder, "pr_curves.png", "precision-recall curves")}
{_image(folder, "per_class_AP50.png", "per-class AP50")}</div>
<h2>Confusion matrix</h2>
<p class="note">IoU {iou_threshold:g}; rows: ground truth, columns: prediction; background row: false positives,
background column: missed boxes (counts in confusion_matrix.json).</p>
{_image(folder, "confusion_matrix.png", "confusion matrix")}
<h2>Error breakdown</h2>
<p class="note">TIDE-style types at IoU 0.5 (background IoU 0.1), over all detections; gain: VOC mAP@0.5 points
won by correcting that type alone (rules in the README).</p>
{_errors(metrics)}
{_image(folder, "errors.png", "error breakdown")}
<h2>Worst images</h2>
{_worst(folder, worst)}
"""
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style></head><body>\n{body}<script>{_JS}</script></body></html>\n")
    write_text(path, page)
