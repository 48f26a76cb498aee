"""The HTML report as a person sees it: the answer first, metadata folded away, and (in headless Chromium at
1400 px) nothing wider than the page."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from edgeprof.results.rows import append_rows, write_metadata

pytest.importorskip("matplotlib")

ACTS = {"relu": (0.05, 20.0), "leakyrelu": (0.06, 20.5), "silu": (0.09, 21.5), "hardswish": (0.08, 21.0),
        "mish": (1.2, 60.0)}
CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
                 if shutil.which(n)), None)


def _rows(run_id: str) -> list[dict]:
    """Two series (conv and c3) at three widths; mish 3-14x relu, the rest within 1.0-1.3x."""
    ran_as = {"relu": "", "leakyrelu": "", "silu": "QuickGelu", "hardswish": "HardSigmoid+Mul",
              "mish": "Softplus+Tanh+Mul"}
    rows = []
    for block, convs in (("conv", 1), ("c3", 5)):
        for width in (16, 32, 64):
            macs = convs * width * width * 9 * 40 * 40
            base = ACTS["relu"][0] + ACTS["relu"][1] * macs / 1e9
            for act, (intercept, slope) in ACTS.items():
                median = intercept + slope * macs / 1e9
                ratio = median / base
                ops = "+".join([ran_as[act]] * convs) if ran_as[act] else ""
                rows.append({
                    "act": act, "block": block, "width": width, "depth": 1, "imgsz": 40, "batch": 1, "kernel": 3,
                    "stride": 1, "scaling": "width", "params": convs * width * width * 9, "macs": macs,
                    "threads": 1, "inter_threads": 1, "opt_level": "all", "spinning": False, "arena": True,
                    "provider": "CPUExecutionProvider", "exporter": "torchscript", "opset": 17,
                    "median_ms": median, "p90_ms": median * 1.05, "ci95_low_ms": median * 0.98,
                    "ci95_high_ms": median * 1.02, "n": 40, "ci_reached": act != "silu", "noisy": act == "silu",
                    "baseline": "relu", "ratio_to_baseline": ratio, "ratio_ci95_low": ratio * 0.99,
                    "ratio_ci95_high": ratio * 1.01, "fused": act in ("relu", "leakyrelu"), "act_ops": ops,
                    "fused_by_timing": act == "relu", "act_alone_ms": 0.01 * width, "peak_rss_run_mb": 30 + width,
                    "act_peak_mb": width / 16, "weights_mb": 0.01 * width, "status": "ok", "run_id": run_id,
                    "model": f"models/{block}-k3s1_{act}_w{width}_i40_b1-0123456789ab.onnx",
                    "host_fingerprint": "aaaaaaaaaa", "cpu_model": "AMD EPYC 7B13 64-Core Processor",
                    "ort_version": "1.32.0", "frac_peak_gflops": 0.9 / ratio, "act_alone_elements": width * 1600,
                })
                rows.append({**rows[-1], "precision": "int8", "ratio_to_fp32": 0.6, "quant_rel_err": 0.012,
                             "quant_max_abs_err": 0.03, "model": rows[-1]["model"].replace(".onnx", "-int8.onnx")})
    return rows


@pytest.fixture(scope="module")
def html_report(tmp_path_factory):
    from edgeprof.report.summary import write_report

    folder = tmp_path_factory.mktemp("results")
    csv = folder / "sweep-with-a-rather-long-file-name-2026-01-01T00-00-00.csv"
    append_rows(csv, _rows("run1"))
    write_metadata(csv, {"run_id": "run1", "host_fingerprint": "aaaaaaaaaa", "timestamp": "2026-01-01T00:00:00+00:00",
                         "command": "edgeprof sweep " + " ".join(f"--acts {','.join(ACTS)}" for _ in range(8)),
                         "host": {"cpu_model": "AMD EPYC 7B13 64-Core Processor", "cores": 2, "usable_cores": 2,
                                  "os": "Linux-6.1.0-x86_64-with-glibc2.36"},
                         "versions": {"onnxruntime": "1.32.0", "torch": "2.13.0", "numpy": "2.4.6"}})
    return write_report([csv], tmp_path_factory.mktemp("report"), fmt="html")


def test_the_report_leads_with_the_answer(html_report):
    page = html_report.read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert headings[0].startswith("What each activation costs")
    assert headings[1].startswith("Does the cost grow") and headings[-1] == "Runs"
    first = page.index(headings[0])
    assert first < page.index("<img", first) < page.index("<table", first)  # a chart, then the compact table
    cost = page[page.index("<table", first):page.index("</table>", first)]
    assert "<th>series</th><th>act</th><th>× relu</th>" in cost and "<td>mish</td>" in cost
    assert "<td>relu</td>" not in cost  # the baseline is the reference line, not a row
    runs = page[page.index("<h2>Runs</h2>"):]
    assert runs.index("<details>") < runs.index("AMD EPYC") < runs.index("</details>")  # metadata folded away
    assert (html_report.parent / "summary-aaaaaaaaaa-onnxruntime-1.32.0.png").stat().st_size > 5000


def _chromium(*args: str, tmp_path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000", "--hide-scrollbars"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


MEASURE = """<script>
document.querySelectorAll('details').forEach(d => d.open = true);  // folded tables must fit too
const width = document.documentElement.clientWidth;
const widest = Math.max(...[...document.querySelectorAll('table, img, figure, p, pre')]
  .map(e => e.getBoundingClientRect().right));
const page = document.body.getBoundingClientRect().right - parseFloat(getComputedStyle(document.body).paddingRight);
document.body.setAttribute('data-client-width', width);
document.body.setAttribute('data-page-right', Math.floor(page));
document.body.setAttribute('data-scroll-width', document.documentElement.scrollWidth);
document.body.setAttribute('data-widest-right', Math.ceil(widest));
</script>
</body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (Debian: apt-get install chromium)")
def test_nothing_is_wider_than_a_1400_px_page_in_chromium(html_report, tmp_path):
    probe = tmp_path / "probe.html"
    probe.write_text(html_report.read_text().replace("</body>", MEASURE, 1))
    proc = _chromium("--virtual-time-budget=5000", "--dump-dom", probe.as_uri(), tmp_path=tmp_path)
    found = dict(re.findall(r'data-(client-width|scroll-width|widest-right|page-right)="(\d+)"', proc.stdout))
    assert len(found) == 4, f"chromium printed no measurements: {proc.stderr[-1500:]}"
    client, scroll, widest, page = (int(found[k]) for k in ("client-width", "scroll-width", "widest-right",
                                                               "page-right"))
    assert 1300 <= client <= 1400  # the page really was laid out at 1400 px
    assert scroll <= client, f"the page scrolls sideways: {scroll} px of content in a {client} px window"
    # a table in a scrolling box does not widen the page but still runs past its right edge
    assert widest <= page + 1, f"an element ends at {widest} px, past the page's right edge at {page} px"
