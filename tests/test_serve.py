"""The REST server: every route, keys and limits, bad bodies (4xx naming the field, never a
5xx), batching equivalence, text streaming, two workers on one port, schemathesis against the
app's own OpenAPI, and the web page in a real browser (Debian's chromium, when installed)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from skips import not_installed, require, skip_because, skip_unless

pytest.importorskip("fastapi", reason=not_installed("fastapi"))
pytest.importorskip("prometheus_client", reason=not_installed("prometheus_client"))

from genforge.errors import ConfigError
from genforge.serve import Limits, create_app
from genforge.serve.auth import KeyStore, check_bind, hash_key, new_key

from conftest import REPO, SMALL, train_tiny


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny runs, two training steps each: an image GAN, a char LM, a VAE (it completes)."""
    base = tmp_path_factory.mktemp("serve-runs")
    specs = {"dcgan1": ("mnist-dcgan", "gan", []),
             "gpt1": ("shakespeare-char", "ar", ["data.limit=2000",
                                                  f"data.root={REPO / 'data'}"]),
             "vae1": ("mnist-vae", "vae", [])}
    return train_tiny(base, specs)


def png(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def events(body: str) -> list[tuple[str, object]]:
    out = []
    for block in body.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines())
        out.append((lines["event"], json.loads(lines["data"])))
    return out


# --- routes ---------------------------------------------------------------------------------

def test_models_lists_families_modalities_and_knobs(client):
    data = client.get("/v1/models").json()["models"]
    by_id = {m["id"]: m for m in data}
    assert set(by_id) == {"dcgan1", "gpt1", "vae1"}
    assert (by_id["dcgan1"]["family"], by_id["dcgan1"]["modality"]) == ("gan", "images")
    assert by_id["gpt1"]["modality"] == "text" and by_id["vae1"]["complete"] is not None
    knobs = {k["name"]: k for k in by_id["gpt1"]["knobs"]}
    assert knobs["max_new_tokens"]["maximum"] == SMALL["max_new_tokens"]
    assert knobs["temperature"]["type"] == "float" and knobs["stream"]["type"] == "bool"
    assert by_id["dcgan1"]["image"] == {"channels": 1, "size": 28}


def test_generate_png_json_and_array_agree(client):
    grid = client.post("/v1/generate", json={"model": "dcgan1", "n": 4, "seed": 3})
    assert grid.status_code == 200 and grid.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(grid.content)) as im:
        assert im.size == (2 * 30 + 2, 2 * 30 + 2)  # a 2x2 grid of 28 px, 2 px padding
        tiles = np.asarray(im)
    arrays = client.post("/v1/generate", json={"model": "dcgan1", "n": 4, "seed": 3,
                                               "format": "array"}).json()
    x = np.asarray(arrays["data"], dtype=np.uint8)
    assert arrays["shape"] == [4, 1, 28, 28] and np.array_equal(tiles[2:30, 2:30], x[0, 0])
    pngs = client.post("/v1/generate", json={"model": "dcgan1", "n": 4, "seed": 3,
                                             "format": "json"}).json()["images"]
    assert len(pngs) == 4
    with Image.open(io.BytesIO(base64.b64decode(pngs[3]))) as im:
        assert np.array_equal(np.asarray(im), x[3, 0])


def test_text_json_and_stream_are_the_same_text(client):
    body = {"model": "gpt1", "prompt": "ROMEO:", "max_new_tokens": 12, "seed": 5}
    text = client.post("/v1/generate", json=body).json()["texts"]
    assert len(text) == 1 and text[0].startswith("ROMEO:")
    resp = client.post("/v1/generate", json={**body, "stream": True})
    assert resp.headers["content-type"].startswith("text/event-stream")
    got = events(resp.text)
    tokens = [data for kind, data in got if kind == "token"]
    assert got[-1][0] == "done" and got[-1][1]["texts"] == text
    assert tokens and "".join(tokens) == text[0]  # the pieces add up to the seeded text


def test_complete_fills_only_the_mask(client):
    image = np.full((28, 28), 200, np.uint8)
    for mask in ({"mask": "bottom-half"}, {"mask_image": png(
            np.pad(np.full((14, 28), 255, np.uint8), ((14, 0), (0, 0))))}):
        resp = client.post("/v1/complete", json={"model": "vae1", "image": png(image),
                                                 "seed": 0, **mask})
        assert resp.status_code == 200, resp.text
        with Image.open(io.BytesIO(resp.content)) as im:
            filled = np.asarray(im)
        assert np.array_equal(filled[:14], image[:14])  # known pixels come back unchanged
        assert not np.array_equal(filled[14:], image[14:])


def test_healthz_metrics_and_page(client):
    assert client.get("/healthz").json()["status"] == "ok"
    client.post("/v1/generate", json={"model": "dcgan1", "n": 2})
    client.post("/v1/generate", json={"model": "dcgan1", "n": 99})
    text = client.get("/metrics").text
    for name in ("genforge_requests_total", "genforge_request_seconds_bucket",
                 "genforge_batch_samples_bucket", "genforge_queue_depth",
                 'genforge_errors_total{code="422"}'):
        assert name in text, name
    page = client.get("/")
    assert page.status_code == 200 and "/v1/models" in page.text
    assert client.get("/openapi.json").json()["paths"]["/v1/generate"]


# --- batching -------------------------------------------------------------------------------

async def _concurrently(app, bodies):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        return await asyncio.gather(*[c.post("/v1/generate", json=b) for b in bodies])


def test_batched_requests_equal_alone_and_get_their_own_rows(models):
    app = create_app(models=models, limits=Limits(**{**SMALL, "max_wait_ms": 200}))
    bodies = [{"model": "dcgan1", "n": k, "seed": 10 + k, "format": "array"} for k in (1, 2, 3)]
    bodies += [{"model": "dcgan1", "n": 2, "format": "array"} for _ in range(4)]
    together = asyncio.run(_concurrently(app, bodies))
    alone = [asyncio.run(_concurrently(app, [b]))[0] for b in bodies[:3]]
    for resp, body in zip(together, bodies, strict=True):
        assert np.asarray(resp.json()["data"]).shape == (body["n"], 1, 28, 28)
    for a, b in zip(together[:3], alone, strict=True):  # seeded: bit-identical
        assert a.json()["data"] == b.json()["data"]
    rows = [np.asarray(r.json()["data"]) for r in together[3:]]
    assert not np.array_equal(rows[0], rows[1])  # unseeded callers get different rows
    metrics = app.state.metrics.registry
    shared = metrics.get_sample_value("genforge_batch_requests_sum", {"model": "dcgan1"})
    passes = metrics.get_sample_value("genforge_batch_requests_count", {"model": "dcgan1"})
    assert shared > passes  # at least one forward pass served several requests


def test_unseeded_texts_share_their_steps(models):
    app = create_app(models=models, limits=Limits(**{**SMALL, "max_wait_ms": 200}))
    bodies = [{"model": "gpt1", "prompt": p, "max_new_tokens": 6, "n": 2}
              for p in ("KING:", "KING:", "A", "ROMEO:")]  # prompts differ: still one session
    answers = asyncio.run(_concurrently(app, bodies))
    for body, resp in zip(bodies, answers, strict=True):
        assert resp.status_code == 200, resp.text
        texts = resp.json()["texts"]
        assert len(texts) == 2 and all(t.startswith(body["prompt"]) for t in texts)
    reg = app.state.metrics.registry
    # one observation a token step: one after another would be 4 x 6 steps of one request
    steps = reg.get_sample_value("genforge_batch_requests_count", {"model": "gpt1"})
    shared = reg.get_sample_value("genforge_batch_requests_sum", {"model": "gpt1"})
    assert steps <= 6 + 3 and shared > steps  # steps served several requests


# --- keys, limits, bad bodies ---------------------------------------------------------------

def test_keys_missing_wrong_and_revoked(models, tmp_path):
    from fastapi.testclient import TestClient

    (a, line_a), (b, line_b) = new_key("alice"), new_key("bob")
    keys = tmp_path / "keys.txt"
    keys.write_text(f"# digests only\n{line_a}\n{line_b}\n")
    assert a not in keys.read_text() and hash_key(a) in keys.read_text()
    c = TestClient(create_app(models=models, keys=keys))
    assert c.get("/v1/models").status_code == 401
    assert c.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert c.get("/v1/models", headers={"Authorization": f"Bearer {a}"}).status_code == 200
    time.sleep(0.01)
    keys.write_text(f"{line_b}\n")  # revoke alice: the file is re-read when it changes
    os.utime(keys, (time.time() + 5, time.time() + 5))
    revoked = c.get("/v1/models", headers={"Authorization": f"Bearer {a}"})
    assert revoked.status_code == 401 and "revoked" in revoked.json()["detail"]
    assert c.get("/v1/models", headers={"Authorization": f"Bearer {b}"}).status_code == 200
    assert c.get("/healthz").status_code == 200  # liveness needs no key


def test_loopback_only_without_keys(models, tmp_path):
    from fastapi.testclient import TestClient

    with pytest.raises(ConfigError, match=r"--host 0\.0\.0\.0: refusing .* without --api-keys"):
        check_bind("0.0.0.0", None)
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    keys = tmp_path / "k.txt"
    keys.write_text(new_key()[1] + "\n")
    check_bind("0.0.0.0", KeyStore(keys))
    far = TestClient(create_app(models=models), client=("10.1.2.3", 4000))
    assert far.get("/v1/models").status_code == 403
    keys.write_text("not-a-digest\n")
    with pytest.raises(ConfigError, match="k.txt:1: not a SHA-256"):
        KeyStore(keys)


def test_rate_limit_answers_429(models):
    from fastapi.testclient import TestClient

    c = TestClient(create_app(models=models, limits=Limits(rate=0.5, burst=2)))
    codes = [c.get("/v1/models").status_code for _ in range(3)]
    assert codes == [200, 200, 429]
    assert int(c.get("/v1/models").headers["retry-after"]) >= 1


@pytest.mark.parametrize(("body", "field"), [
    ({"model": "dcgan1", "n": "many"}, "n"),
    ({"model": "dcgan1", "n": 0}, "n"),
    ({"model": "dcgan1", "n": 9}, "n"),  # over the cap
    ({"model": "dcgan1", "seed": -1}, "seed"),
    ({"model": "dcgan1", "seed": 1.5}, "seed"),
    ({"model": "nope"}, "model"),
    ({"model": "../../etc/passwd"}, "model"),
    ({"model": "/tmp/run"}, "model"),
    ({"n": 1}, "model"),
    ({"model": "dcgan1", "prompt": "hi"}, "prompt"),  # a knob of another family
    ({"model": "dcgan1", "steps": 3}, "steps"),
    ({"model": "dcgan1", "format": "csv"}, "format"),
    ({"model": "dcgan1", "label": 1}, "label"),  # not conditional
    ({"model": "dcgan1", "colour": "red"}, "colour"),
    ({"model": "gpt1", "max_new_tokens": 10_000}, "max_new_tokens"),
    ({"model": "gpt1", "temperature": -1}, "temperature"),
    ({"model": "gpt1", "top_p": 0}, "top_p"),
    ({"model": "gpt1", "repetition_penalty": 5e-324}, "repetition_penalty"),  # NaNs otherwise
    ({"model": "gpt1", "temperature": 1e-300}, "temperature"),
    ({"model": "gpt1", "prompt": "\u4e2d\u6587"}, "prompt"),  # not in a char vocabulary
    ({"model": "gpt1", "prompt": "\u4e2d", "stream": True}, "prompt"),
    ({"model": "gpt1", "stop": "x"}, "stop"),
])
def test_bad_generate_bodies_name_the_field(client, body, field):
    resp = client.post("/v1/generate", json=body)
    assert 400 <= resp.status_code < 500, resp.text
    assert any(field in (e["loc"][-1:] or [""])[0] or e["msg"].startswith(field)
               for e in resp.json()["detail"]), resp.text


@pytest.mark.parametrize(("body", "field"), [
    ({"image": "%%%", "mask": "center"}, "image"),
    ({"image": base64.b64encode(b"GIF89a not really").decode(), "mask": "center"}, "image"),
    ({"image": png(np.zeros((30, 30), np.uint8)), "mask": "center"}, "image"),
    ({"image": png(np.zeros((28, 28), np.uint8)), "mask": "../mask.png"}, "mask"),
    ({"image": png(np.zeros((28, 28), np.uint8)), "mask": "random:7"}, "mask"),
    ({"image": png(np.zeros((28, 28), np.uint8)), "mask_image": "AAAA"}, "mask_image"),
    ({"image": png(np.zeros((28, 28), np.uint8))}, "mask"),
    ({"image": png(np.zeros((28, 28), np.uint8)), "mask": "center", "method": "x"}, "method"),
])
def test_bad_uploads_name_the_field(client, body, field):
    resp = client.post("/v1/complete", json={"model": "vae1", **body})
    assert resp.status_code == 422, resp.text
    assert any(e["loc"][-1] == field for e in resp.json()["detail"]), resp.text
    resp = client.post("/v1/complete", json={"model": "dcgan1", **body, "mask": "center"})
    assert resp.status_code == 422  # and a model that cannot complete says so


def test_malformed_json_and_oversized_body(models):
    from fastapi.testclient import TestClient

    c = TestClient(create_app(models=models, limits=Limits(max_body=1000)))
    assert c.post("/v1/generate", content=b"{not json",
                  headers={"content-type": "application/json"}).status_code == 422
    big = c.post("/v1/generate", json={"model": "gpt1", "prompt": "a" * 5000})
    assert big.status_code == 413 and "body" in big.json()["detail"]


def test_only_safetensors_folders_load(tmp_path, runs):
    pickled = tmp_path / "hf"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"\x80\x04")
    with pytest.raises(ConfigError, match="pickled weights"):
        create_app([pickled])
    with pytest.raises(ConfigError, match="neither a genforge run"):
        create_app([tmp_path])
    app = create_app([runs["dcgan1"], runs["dcgan1"]])  # ids stay unique
    assert list(app.state.served) == ["dcgan1", "dcgan1-2"]


# --- live servers on loopback ---------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live(models):
    """The app under uvicorn in a thread, on a free loopback port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(models=models, limits=Limits(**SMALL)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def test_cli_refuses_another_host_without_keys(runs):
    from typer.testing import CliRunner

    from genforge.cli import app

    result = CliRunner().invoke(app, ["serve", str(runs["dcgan1"]), "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --host 0.0.0.0: refusing to serve beyond this machine without --api-keys; "
        "use --host 127.0.0.1 or give a keys file"]


def test_two_workers_share_one_port(runs):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "genforge", "serve", str(runs["dcgan1"]),
                             "--port", str(port), "--workers", "2", "--threads", "1"],
                            start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        pids, url, deadline = set(), f"http://127.0.0.1:{port}", time.time() + 90
        while len(pids) < 2 and time.time() < deadline:
            try:  # a new connection each time, so that either worker may take it
                pids.add(httpx.get(url + "/healthz", timeout=5).json()["worker"])
            except httpx.TransportError:
                time.sleep(0.3)
        assert len(pids) == 2, f"answered by {pids}"
        resp = httpx.post(url + "/v1/generate", json={"model": "dcgan1", "n": 2, "seed": 0,
                                                      "format": "array"}, timeout=30)
        assert np.asarray(resp.json()["data"]).shape == (2, 1, 28, 28)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def test_a_serving_process_shortens_the_gil_switch_interval():
    """Every serving process (one, each worker, each Ray replica) hands the GIL between the
    model thread and the event loop every 0.5 ms, not every 5 (see server.GIL_SWITCH_S)."""
    from genforge.serve.server import GIL_SWITCH_S, configure_process

    before = sys.getswitchinterval()
    try:
        configure_process(None)
        assert sys.getswitchinterval() == pytest.approx(GIL_SWITCH_S) and before > GIL_SWITCH_S
    finally:
        sys.setswitchinterval(before)


def test_schemathesis_finds_no_5xx_and_no_schema_violation(live, tmp_path):
    exe = shutil.which("schemathesis") or str(Path(sys.executable).with_name("schemathesis"))
    if not Path(exe).exists():
        skip_because("not-installed", "schemathesis (pip install -e '.[dev]')")
    result = subprocess.run(
        [exe, "run", f"{live}/openapi.json", "--checks", "not_a_server_error,"
         "status_code_conformance,content_type_conformance,response_schema_conformance",
         "--max-examples", "25", "--seed", "1", "--generation-deterministic",
         "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    summary = result.stdout[-3000:]
    (tmp_path / "summary.txt").write_text(summary)
    assert result.returncode == 0, summary


CHROMIUM = Path("/usr/bin/chromium")


@skip_unless(CHROMIUM.exists(), "not-installed", "Debian's chromium (apt-get install -y chromium)")
def test_page_generates_a_grid_and_streams_text(live, tmp_path):
    """Fails, not skips, when chromium and playwright are installed but cannot open the page."""
    sync_api = require("playwright.sync_api")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--no-first-run"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=flags)
        page = browser.new_page(viewport={"width": 1000, "height": 1100})
        page.goto(live + "/")
        image = page.locator("#model-dcgan1")
        image.locator("input[name=n]").fill("8")
        image.locator("input[name=seed]").fill("0")
        image.locator("button[type=submit]").click()
        page.wait_for_selector("#model-dcgan1 img.grid, #model-dcgan1 .error", timeout=30_000)
        assert image.locator(".error").count() == 0, image.locator(".error").inner_text()
        page.wait_for_function("document.querySelector('#model-dcgan1 img.grid').naturalWidth "
                               "> 0")
        text = page.locator("#model-gpt1")
        text.locator("input[name=prompt]").fill("ROMEO:")
        text.locator("input[name=max_new_tokens]").fill("20")
        text.locator("input[name=stream]").check()
        text.locator("button[type=submit]").click()
        page.wait_for_selector("#model-gpt1 pre.text[data-done='1']", timeout=30_000)
        streamed = text.locator("pre.text").inner_text()
        shot = Path(os.environ.get("GENFORGE_SERVE_SCREENSHOT", tmp_path / "page.png"))
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert streamed.startswith("ROMEO:") and len(streamed) > len("ROMEO:")
    assert shot.stat().st_size > 1000


@pytest.mark.slow
def test_ray_serve_deployment_answers(runs):
    """The same app on a local single-node Ray: skipped only where Ray is not installed; a
    node or a Serve proxy that does not start is a failure."""
    ray = require("ray")
    from ray import serve

    from genforge.serve.ray_app import deploy

    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        deploy([runs["dcgan1"]], port=port, replicas=2, threads=1, blocking=False,
               limits=Limits(**SMALL))
        url = f"http://127.0.0.1:{port}"
        pids = {httpx.get(url + "/healthz", timeout=60).json()["worker"] for _ in range(20)}
        resp = httpx.post(url + "/v1/generate", json={"model": "dcgan1", "n": 2, "seed": 0,
                                                      "format": "array"}, timeout=60)
        assert resp.json()["shape"] == [2, 1, 28, 28]
        assert httpx.post(url + "/v1/generate", json={"model": "x"}, timeout=60).status_code \
            == 422
        assert len(pids) == 2  # both replicas answer
    finally:
        serve.shutdown()
        ray.shutdown()
