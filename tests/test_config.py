"""Config: presets validate; unknown keys, wrong types and bad combinations teach."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from genforge.config import ConfigError, apply_overrides, parse_override, save_config
from genforge.registry import (
    FAMILIES,
    PRESET_DIR,
    PRESETS,
    build_run_config,
    load_config,
    resolve_preset,
)


def test_every_shipped_yaml_is_a_registered_preset_and_validates():
    shipped = sorted(p.name for p in PRESET_DIR.glob("*.yaml"))
    assert shipped == sorted(p.name for p in PRESETS.values())
    for name in PRESETS:
        cfg = load_config(name)
        assert cfg.preset == name
        assert cfg.family in FAMILIES


def test_resolved_config_round_trips_through_yaml(tmp_path):
    cfg = load_config("mnist-wgan-gp", ["train.lr=1e-4", "train.ema_decay=0.999"])
    save_config(cfg, tmp_path / "config.yaml")
    again = build_run_config(yaml.safe_load((tmp_path / "config.yaml").read_text()), source="x")
    assert again == cfg
    text = (tmp_path / "config.yaml").read_text()
    assert "max_steps" in text and "grad_clip" in text  # every default written out


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("train.lr=1e-4", ["train", "lr"], "1e-4"),  # YAML 1.1 keeps it a string...
        ("train.max_steps=500", ["train", "max_steps"], 500),
        ("train.betas=[0.0, 0.9]", ["train", "betas"], [0.0, 0.9]),
        ("model.conditional=true", ["model", "conditional"], True),
        ("train.grad_clip=null", ["train", "grad_clip"], None),
    ],
)
def test_parse_override(text, key, value):
    assert parse_override(text) == (key, value)


def test_override_values_are_typed():
    cfg = load_config("mnist-dcgan", ["train.lr=1e-4", "train.betas=[0.0, 0.9]"])
    assert cfg.train.lr == pytest.approx(1e-4)  # ...and the float field converts it
    assert cfg.train.betas == (0.0, 0.9)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["train.lr_sched=cosine"], "unknown key 'train.lr_sched' (did you mean 'lr_schedule'?)"),
        (["train.precision=fp16"],
         "train.precision='fp16': allowed values are 'auto', 'fp32', 'bf16'"),
        (["train.max_steps=abc"], "train.max_steps='abc': expected an integer"),
        (["train.max_steps=0"], "train.max_steps=0: must be a positive integer"),
        (["model.loss=wgan"], "model.loss='wgan': allowed values are 'bce', 'wgan-gp'"),
        (["train.stop_after=5000"], "train.stop_after=5000 is beyond train.max_steps=2000"),
        (["train.grad_accum=3"], "train.batch_size=128 is not divisible by train.grad_accum=3"),
        (["train.betas=[0.5]"], "train.betas=[0.5]: expected a list of 2 values"),
        (["train.ema_decay=1.5"], "train.ema_decay=1.5: must be in (0, 1)"),
        (["data.split=valid"], "data.split='valid': allowed values are 'train', 'test'"),
        (["data.dataset=folder"], "data.dataset='folder' needs data.path"),
        (["model.gp_weight=5"], "model.gp_weight applies only to model.loss=wgan-gp"),
        (["bogus=1"], "unknown key 'bogus'"),
        (["train=3"], "train must be a mapping"),
        (["family=flow"], "family='flow': allowed values are ar, diffusion, gan"),
    ],
)
def test_bad_configs_are_rejected_with_key_value_and_allowed(overrides, needle):
    with pytest.raises(ConfigError) as info:
        load_config("mnist-dcgan", overrides)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message
    assert "mnist-dcgan.yaml" in message  # the source is named


def test_vae_specific_combinations():
    with pytest.raises(ConfigError, match="obs_sigma applies only to model.likelihood=gaussian"):
        load_config("mnist-vae", ["model.obs_sigma=0.1"])
    cfg = load_config("mnist-vae", ["model.likelihood=gaussian", "model.obs_sigma=0.1"])
    assert cfg.model.obs_sigma == 0.1


def test_unknown_preset_suggests_the_closest(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'mnist-dcgan'"):
        resolve_preset("mnist-dcgn")
    with pytest.raises(ConfigError, match="no such config file"):
        resolve_preset(str(tmp_path / "missing.yaml"))


def test_yaml_errors_name_the_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: gan\nmodel: {arch: dcgan\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+ is not valid YAML"):
        load_config(str(bad))
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(str(listy))


def test_overrides_do_not_mutate_their_input():
    raw = {"train": {"lr": 0.1}}
    merged = apply_overrides(raw, ["train.lr=0.2"])
    assert raw["train"]["lr"] == 0.1 and merged["train"]["lr"] == 0.2


def test_cli_validate_exit_codes():
    ok = subprocess.run([sys.executable, "-m", "genforge", "validate", "mnist-dcgan"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: mnist-dcgan")
    bad = subprocess.run([sys.executable, "-m", "genforge", "validate", "mnist-dcgan",
                          "train.precision=fp8"], capture_output=True, text=True)
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "fp8" in lines[0]
    assert "Traceback" not in bad.stderr


# --- the options families declare: CLI flags, server knobs, checks --------------------------

def test_every_option_names_fields_its_model_config_has():
    import dataclasses

    for spec in FAMILIES.values():
        fields = {f.name for f in dataclasses.fields(spec.model_config)}
        for option in (*spec.sample_options, *spec.complete_options):
            for field in (option.default_field, option.maximum_field):
                assert field is None or field in fields, (spec.name, option.name, field)
            if option.default is not None:
                assert option.check(option.default) == option.default


def test_a_family_checks_the_options_it_declares_and_refuses_others():
    assert FAMILIES["diffusion"].check_options("complete", {"steps": 3, "method": "replace"}) \
        == {"steps": 3, "method": "replace"}
    for family, verb, given, needle in [
        ("gan", "sample", {"prompt": "hi"}, "--prompt does not apply to gan models"),
        ("vae", "complete", {"jump": 2},
         "--jump does not apply to vae models; they take method, steps"),
        ("diffusion", "complete", {"steps": 0}, "--steps=0: must be >= 1"),
        ("vae", "complete", {"method": "repaint"},
         "--method='repaint': allowed values are optimize, iterate"),
        ("ar", "sample", {"top_p": 0.0}, "--top-p=0.0: must be > 0"),
    ]:
        with pytest.raises(ConfigError) as info:
            FAMILIES[family].check_options(verb, given)
        assert str(info.value) == needle


def test_a_tabular_kind_takes_the_options_its_objective_names():
    from types import SimpleNamespace

    tables = FAMILIES["tabular"]
    copula = SimpleNamespace(sample_options=("where",))
    assert [o.name for o in tables.options("sample", copula)] == ["where"]
    assert [o.name for o in tables.options("sample")] == ["where", "temperature"]
    with pytest.raises(ConfigError, match="--temperature does not apply to tabular models; "
                                          "they take where"):
        tables.check_options("sample", {"temperature": 0.5}, copula)


def test_options_shared_by_families_are_one_flag_taking_every_choice():
    from genforge.registry import COMPLETE_OPTIONS

    method = COMPLETE_OPTIONS["method"]  # diffusion's and the VAE's
    assert method.choices == ("repaint", "replace", "optimize", "iterate")
    assert list(COMPLETE_OPTIONS) == ["method", "steps", "jump", "resample"]
    with pytest.raises(ConfigError, match="allowed values are repaint, replace, optimize"):
        method.check("x")


def _served(family: str, modality: str, model_cfg, num_classes: int = 0):
    from types import SimpleNamespace

    from genforge.registry import get_modality

    return SimpleNamespace(config=SimpleNamespace(model=model_cfg), objective=None,
                           family=family, family_spec=FAMILIES[family], modality=modality,
                           modality_spec=get_modality(modality), num_classes=num_classes)


def test_server_knobs_are_the_options_bounded_by_the_run_and_the_caps():
    from dataclasses import replace

    from genforge.serve.knobs import check_options, complete_knobs, sample_knobs
    from genforge.serve.schemas import Limits

    caps = replace(Limits(), max_steps=250, max_resample=10)
    cfg = load_config("mnist-ddpm", ["model.timesteps=100", "model.sampling_steps=80",
                                          "model.complete_steps=60"]).model
    model = _served("diffusion", "images", cfg)
    knobs = {k.name: k.as_dict() for k in sample_knobs(model, caps)}
    assert list(knobs) == ["n", "seed", "scheduler", "steps", "eta", "guidance"]
    assert knobs["n"]["default"] == 16 and knobs["n"]["maximum"] == caps.max_n
    assert (knobs["steps"]["maximum"], knobs["steps"]["default"]) == (100, 80)  # min(1e4, T, cap)
    assert knobs["scheduler"] == {"name": "scheduler", "type": "enum", "default": cfg.sampler,
                                  "help": "Diffusion: the sampler.",
                                  "choices": ("ddpm", "ddim")}
    filling = {k.name: k for k in complete_knobs(model, caps)}
    assert [filling[n].option.maximum for n in ("steps", "jump", "resample")] == [100, 250, 10]
    assert [filling[n].default for n in ("method", "steps", "jump", "resample")] == \
        ["repaint", 60, cfg.repaint_jump, cfg.repaint_resample]
    with pytest.raises(ConfigError, match="^resample=11: must be <= 10$"):
        check_options(list(filling.values()), {"resample": 11}, "diffusion")
    with pytest.raises(ConfigError, match="^prompt: does not apply to this diffusion model"):
        check_options(list(filling.values()), {"prompt": "x"}, "diffusion")


def test_a_model_whose_modality_prints_streams_and_samples_one_by_default():
    from genforge.serve.knobs import sample_knobs
    from genforge.serve.schemas import Limits

    knobs = {k.name: k for k in sample_knobs(_served("ar", "text", None), Limits())}
    assert knobs["n"].default == 1 and knobs["stream"].default is False
    assert knobs["repetition_penalty"].option.minimum == 0.01  # the server's floor
    assert knobs["max_new_tokens"].option.maximum == Limits().max_new_tokens


def test_cli_flags_are_checked_by_their_option_before_a_model_is_loaded(tmp_path):
    from typer.testing import CliRunner

    from genforge.cli import app

    runner = CliRunner()
    shown = runner.invoke(app, ["complete", "--help"], env={"COLUMNS": "200"})
    assert all(f"--{flag}" in shown.output for flag in ("method", "steps", "jump", "resample"))
    for args, needle in [
        (["complete", str(tmp_path), "--input", "x.npz", "--method", "bogus"],
         "--method='bogus': allowed values are repaint, replace, optimize, iterate"),
        (["complete", str(tmp_path), "--input", "x.npz", "--steps", "0"],
         "--steps=0: must be >= 1"),
        (["sample", str(tmp_path), "--top-p", "0"], "--top-p=0.0: must be > 0"),
        (["sample", str(tmp_path), "--precision", "fp16"],
         "precision='fp16': allowed values are auto, fp32, bf16"),
    ]:
        result = runner.invoke(app, args)  # tmp_path holds no run: checked before loading
        assert result.exit_code == 2, result.output
        assert result.output.strip() == f"error: {needle}"
