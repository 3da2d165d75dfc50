"""report.html: self-contained (every image a data URI, a CSP that forbids requests), every
section present, names escaped; and, in a real headless browser, rendered without a console error."""

from __future__ import annotations

import re

import numpy as np
import pytest

from browser import render
from resnet_keras.finetune.metrics import classification_metrics, most_wrong
from resnet_keras.finetune.report import write_report

NAMES = ["cat", "dog", "<script>alert(1)</script>"]


def history(epochs=5, head=2):
    return [dict(epoch=e, phase="head" if e < head else "unfrozen", loss=1.0 / (e + 1), accuracy=0.5 + e / 20,
                 val_loss=1.1 / (e + 1), val_top1=0.45 + e / 20) for e in range(epochs)]


def write(path, names=NAMES, overlays=False, **changes):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, len(names), 40)
    probs = rng.dirichlet(np.ones(len(names)), 40)
    validation = classification_metrics(probs, labels, names)
    mistakes = [dict(pixels=rng.integers(0, 255, (16, 16, 3)), name=f"{names[labels[r]]}/img{r}.png",
                     true=names[labels[r]], predicted=names[p], confidence=c)
                for r, p, c in most_wrong(probs, labels, 6)]
    options = dict(title="Fine-tuned resnet20", summary=[("model", "resnet20"), ("classes", ", ".join(names))],
                   history=history(), unfreeze_epochs=[2], validation=validation, class_names=names,
                   mistakes=mistakes, settings={"model": "resnet20", "lr": 0.001},
                   overlays=[m["pixels"][::-1] for m in mistakes] if overlays else None)
    write_report(path, **{**options, **changes})
    return path.read_text(encoding="utf-8"), mistakes


def test_report_is_self_contained_and_has_every_section(tmp_path):
    page, mistakes = write(tmp_path / "report.html")
    assert "default-src 'none'" in page  # the page may not request anything
    sources = re.findall(r"""(?:src|href)=['"]?([^'" >]+)""", page)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    for element in ("id=summary", "id=curves", "id=per-class", "id=confusion", "id=mistakes", "id=settings"):
        assert element in page
    assert page.count("class=unfreeze") == 2  # one dashed line in each chart
    assert page.count("alt='validation image'") == len(mistakes) == 6
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_report_shows_grad_cam_overlays_when_the_hook_gives_them(tmp_path):
    without, _ = write(tmp_path / "a.html")
    with_overlays, mistakes = write(tmp_path / "b.html", overlays=True)
    assert "alt='Grad-CAM'" not in without
    assert with_overlays.count("alt='Grad-CAM'") == len(mistakes)


def test_many_classes_list_the_frequent_confusions_instead_of_a_matrix(tmp_path):
    names = [f"class{i}" for i in range(60)]
    page, _ = write(tmp_path / "report.html", names=names)
    assert "the most frequent confusions" in page and page.count("<tr>") < 200


def test_a_run_without_validation_says_so(tmp_path):
    page, _ = write(tmp_path / "report.html", validation={}, mistakes=[])
    assert "No validation images" in page and "id=curves" in page


@pytest.mark.browser
def test_report_renders_in_headless_chromium_without_console_errors(tmp_path):
    page = tmp_path / "report.html"
    write(page, overlays=True)
    rendered = render(page, tmp_path)
    assert rendered.console == []
    for element in ('id="summary"', 'id="curves"', 'id="per-class"', 'id="confusion"', 'id="mistakes"',
                    'id="settings"', "<svg"):
        assert element in rendered.dom
    from PIL import Image

    shot = np.asarray(Image.open(rendered.screenshot).convert("L"))
    assert shot.shape == (2400, 1200) and shot.std() > 10  # not a blank page


@pytest.mark.browser
def test_the_browser_check_sees_console_errors(tmp_path):
    """The check above could not fail if the console were never read: a page that breaks its CSP."""
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><meta http-equiv='Content-Security-Policy' "
                    "content=\"default-src 'none'\"></head><body><img src='http://127.0.0.1:9/x.png'>"
                    "</body></html>")
    assert any("Content Security Policy" in line for line in render(page, tmp_path).console)
