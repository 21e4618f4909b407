"""What the server sends: every body carries the provenance record the CLI writes (checked by
`genforge inspect` on the body saved as a file), the tables routes (CSV and JSON, `where`,
caps, imputation of uploaded rows, bad uploads as 4xx naming the field), and batching of
seeded image requests with different knobs."""

from __future__ import annotations

import asyncio
import base64
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from skips import not_installed

pytest.importorskip("fastapi", reason=not_installed("fastapi"))

from test_tables import TINY as TINY_TABLE
from test_tables import toy_frame

import genforge
from genforge.labelling import file_hash, read_provenance
from genforge.serve import Limits, create_app

from conftest import REPO, SMALL, train_tiny

AIRLINE = REPO / "data" / "timeseries" / "airline_passengers.csv"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Tiny runs: images (a GAN, a DDPM), a char LM, a series model, a copula table and a
    TabDDPM told its target."""
    base = tmp_path_factory.mktemp("serve-out")
    specs = {"dcgan1": ("mnist-dcgan", "gan", []),
             "ddpm1": ("mnist-ddpm", "diffusion", []),
             "gpt1": ("shakespeare-char", "ar", ["data.limit=2000", f"data.root={REPO / 'data'}"])}
    if AIRLINE.exists():
        specs["ts1"] = ("airline-ar", "series", ["data.limit=144", f"data.root={REPO / 'data'}"])
    out = train_tiny(base, specs)
    csv = base / "toy.csv"
    toy_frame().to_csv(csv, index=False)
    cfg = genforge.load_config("tables", [f"data.path={csv}", "data.target=income",
                                          "model.kind=copula", *TINY_TABLE])
    out["tab1"] = genforge.train(cfg, out=base / "tab1").run_dir
    cfg = genforge.load_config("tables", [f"data.path={csv}", "data.target=income",
                                          "model.kind=tabddpm", "model.condition_on_target=true",
                                          *TINY_TABLE])
    out["tab2"] = genforge.train(cfg, out=base / "tab2").run_dir  # told its target class
    return out


def saved(tmp_path: Path, name: str, body: bytes):
    """The body saved as a file, and what `genforge inspect` reads from it."""
    path = tmp_path / name
    path.write_bytes(body)
    return read_provenance(path)


def check_record(found, runs, model: str, seed, **fields) -> None:
    assert found is not None and found.status == "intact", found
    r = found.record
    assert (r["label"], r["run"], r["seed"]) == ("AI-generated", model, seed)
    assert r["weights_sha256"] == file_hash(runs[model] / "model.safetensors")
    for k, v in fields.items():
        assert r[k] == v, k


# --- provenance -----------------------------------------------------------------------------

def test_image_bodies_carry_the_record(client, runs, tmp_path):
    grid = client.post("/v1/generate", json={"model": "dcgan1", "n": 4, "seed": 3})
    check_record(saved(tmp_path, "grid.png", grid.content), runs, "dcgan1", 3,
                 modality="images", family="gan")
    doc = client.post("/v1/generate", json={"model": "dcgan1", "n": 2, "seed": 3,
                                            "format": "json"})
    check_record(saved(tmp_path, "images.json", doc.content), runs, "dcgan1", 3)
    for i, b64 in enumerate(doc.json()["images"]):  # each PNG carries its own
        check_record(saved(tmp_path, f"{i}.png", base64.b64decode(b64)), runs, "dcgan1", 3)
    arrays = client.post("/v1/generate", json={"model": "dcgan1", "n": 2, "format": "array"})
    check_record(saved(tmp_path, "a.json", arrays.content), runs, "dcgan1", None)
    edited = arrays.json()
    edited["data"][0][0][0][0] = 255 - edited["data"][0][0][0][0]
    assert saved(tmp_path, "b.json", json.dumps(edited).encode()).status == "tampered"


def test_inspect_checks_a_served_grid_with_the_key(runs, monkeypatch, tmp_path):
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from genforge.cli import app as cli

    monkeypatch.setenv("GENFORGE_WATERMARK_KEY", "s3cret")  # records are signed (HMAC)
    c = TestClient(create_app(models={"dcgan1": genforge.load(runs["dcgan1"])}))
    (tmp_path / "grid.png").write_bytes(
        c.post("/v1/generate", json={"model": "dcgan1", "n": 4, "seed": 1}).content)
    out = CliRunner().invoke(cli, ["inspect", str(tmp_path / "grid.png")]).output
    assert "VERIFIED" in out and "AI-generated" in out and "seed=1" in out, out


def test_text_and_stream_carry_the_record(client, runs, tmp_path):
    body = {"model": "gpt1", "prompt": "KING:", "max_new_tokens": 6, "seed": 2}
    check_record(saved(tmp_path, "t.json", client.post("/v1/generate", json=body).content),
                 runs, "gpt1", 2, modality="text")
    stream = client.post("/v1/generate", json={**body, "stream": True}).text
    done = next(b for b in stream.strip().split("\n\n") if b.startswith("event: done"))
    data = done.split("data: ", 1)[1].encode()
    check_record(saved(tmp_path, "done.json", data), runs, "gpt1", 2)


def test_series_csv_and_json_carry_the_record(client, runs, tmp_path):
    csv = client.post("/v1/generate", json={"model": "ts1", "n": 2, "seed": 4, "horizon": 3})
    assert csv.text.startswith("# provenance: ")
    check_record(saved(tmp_path, "s.csv", csv.content), runs, "ts1", 4, modality="series")
    doc = client.post("/v1/generate", json={"model": "ts1", "n": 2, "seed": 4, "horizon": 3,
                                            "format": "json"})
    check_record(saved(tmp_path, "s.json", doc.content), runs, "ts1", 4)


# --- tables ---------------------------------------------------------------------------------

def rows_of(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), comment=None, skiprows=1)  # past the record line


def test_tables_csv_and_json(client, runs, tmp_path):
    resp = client.post("/v1/generate", json={"model": "tab1", "n": 8, "seed": 1})
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    frame = rows_of(resp.text)
    assert len(frame) == 8 and "sex" in frame.columns and "income" in frame.columns
    check_record(saved(tmp_path, "t.csv", resp.content), runs, "tab1", 1, modality="tables")
    doc = client.post("/v1/generate", json={"model": "tab1", "n": 8, "seed": 1,
                                            "format": "json"})
    assert pd.DataFrame(doc.json()["rows"])["sex"].tolist() == frame["sex"].tolist()
    check_record(saved(tmp_path, "t.json", doc.content), runs, "tab1", 1)
    again = client.post("/v1/generate", json={"model": "tab1", "n": 8, "seed": 1})
    assert rows_of(again.text).equals(frame)  # seeded: the same rows
    for seed in ({}, {"seed": 2**63 - 1}):  # the server's fresh 63-bit seed, the largest given
        resp = client.post("/v1/generate", json={"model": "tab1", "n": 8, **seed})
        assert resp.status_code == 200 and len(rows_of(resp.text)) == 8, (seed, resp.text)


def test_tables_where_and_caps(client):
    female = client.post("/v1/generate", json={"model": "tab1", "n": 8, "seed": 2,
                                               "where": "sex=Female"})
    assert set(rows_of(female.text)["sex"]) == {"Female"}
    for body, field in (({"where": "sexx=Female"}, "where"), ({"where": "sex=Other"}, "where"),
                        ({"n": 9}, "n"), ({"format": "png"}, "format"), ({"label": 1}, "label"),
                        ({"steps": 2}, "steps")):
        resp = client.post("/v1/generate", json={"model": "tab1", **body})
        assert resp.status_code == 422, (body, resp.text)
        assert any(e["loc"][-1] == field for e in resp.json()["detail"]), resp.text


async def _concurrently(app, bodies):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        return await asyncio.gather(*[c.post("/v1/generate", json=b) for b in bodies])


@pytest.mark.parametrize("model", ["tab1", "tab2"])
def test_seeded_tables_are_the_same_batched_or_alone(models, model):
    app = create_app(models=models, limits=Limits(**{**SMALL, "max_wait_ms": 200}))
    where = {"where": "income=>50K"} if model == "tab2" else {}  # the told class, steered
    bodies = [{"model": model, "n": k, "seed": 20 + k, "format": "json", **where}
              for k in (1, 3, 5)]
    together = asyncio.run(_concurrently(app, bodies))
    for body, resp in zip(bodies, together, strict=True):
        alone = asyncio.run(_concurrently(app, [body]))[0]
        assert resp.json()["rows"] == alone.json()["rows"] and len(alone.json()["rows"]) == \
            body["n"]
        if where:
            assert {row["income"] for row in resp.json()["rows"]} == {">50K"}


def test_complete_rows_fills_only_the_gaps(client, runs, tmp_path):
    given = toy_frame(6, seed=3).drop(columns=["customer_id"])
    given.loc[[0, 2], "score"] = np.nan
    given.loc[[1, 4], "sex"] = None
    resp = client.post("/v1/complete", json={"model": "tab1", "rows": given.to_csv(index=False),
                                             "seed": 0})
    assert resp.status_code == 200, resp.text
    check_record(saved(tmp_path, "f.csv", resp.content), runs, "tab1", 0,
                 operation="complete")
    filled = rows_of(resp.text)
    assert filled[["score", "sex"]].notna().all().all() and len(filled) == 6
    known = given["age"].notna()
    assert filled.loc[known, "age"].tolist() == given.loc[known, "age"].tolist()
    assert filled.loc[[3, 5], "sex"].tolist() == given.loc[[3, 5], "sex"].tolist()
    back = client.post("/v1/complete", json={"model": "tab1", "rows": resp.text})  # its record
    assert back.status_code == 200, back.text  # line is skipped when rows come back


@pytest.mark.parametrize(("rows", "says"), [
    ('age,score\n1,2\n"unterminated,3\n', "rows"),
    ("age,colour\n30,red\n", "colour"),
    ("age\n", "no rows"),
    ("\n", "rows"),
])
def test_bad_rows_are_4xx_naming_the_field(client, rows, says):
    resp = client.post("/v1/complete", json={"model": "tab1", "rows": rows})
    assert resp.status_code == 422, resp.text
    errors = resp.json()["detail"]
    assert any(e["loc"][-1] == "rows" and says in e["msg"] for e in errors), resp.text
    missing = client.post("/v1/complete", json={"model": "tab1"})
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"][-1] == "rows"


# --- batching of seeded images with different knobs -----------------------------------------

def test_seeded_diffusion_requests_merge_by_knobs(models):
    # a wide gathering window: the three requests must meet in the queue even when a busy
    # 2-core machine delays one of them (300 ms was missed once under load)
    app = create_app(models=models, limits=Limits(**{**SMALL, "max_wait_ms": 1500}))
    bodies = [{"model": "ddpm1", "n": 2, "seed": 1, "steps": 2, "format": "array"},
              {"model": "ddpm1", "n": 1, "seed": 2, "steps": 2, "format": "array"},
              {"model": "ddpm1", "n": 2, "seed": 3, "steps": 3, "format": "array"}]
    together = asyncio.run(_concurrently(app, bodies))
    reg = app.state.metrics.registry
    # one observation a network call (a step of a reverse chain): the two steps=2 requests
    # share both their steps, the steps=3 one runs its three in its own session
    assert reg.get_sample_value("genforge_batch_requests_sum", {"model": "ddpm1"}) == 2 * 2 + 3
    assert reg.get_sample_value("genforge_batch_requests_count", {"model": "ddpm1"}) == 2 + 3
    off = create_app(models=models, limits=Limits(**{**SMALL, "batching": False}))
    for body, resp in zip(bodies, together, strict=True):
        alone = asyncio.run(_concurrently(off, [body]))[0]
        assert resp.json()["data"] == alone.json()["data"]
        assert np.asarray(alone.json()["data"]).shape[0] == body["n"]
