"""The registry finds plug-ins as an installed package declares them: a family and a modality
through the entry-point groups, presets in GENFORGE_CONFIG_PATH's folders; a plug-in that
clashes with another, or does not load, is refused in one line naming both sides.

A plug-in here is a module in tmp_path and a `*.dist-info` folder beside it (what pip writes
for an installed package: METADATA and entry_points.txt), put on sys.path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from genforge import registry
from genforge.errors import ConfigError

TOY = '''
from dataclasses import dataclass

from genforge.families.spec import FamilySpec
from genforge.modalities.base import Modality
from genforge.options import Option


@dataclass
class MixtureConfig:
    components: int = 3


@dataclass
class PointsData:
    points: int = 100


FAMILY = FamilySpec(
    name="toymix", description="A Gaussian mixture", model_config=MixtureConfig,
    objective="toy_plugin:build", modalities=("points",),
    sample_options=(Option("spread", float, "Toy: scale of the components.", 0.0, 10.0),),
)
CLASH = FamilySpec(name="gan", description="another gan", model_config=MixtureConfig,
                   objective="toy_plugin:build", modalities=("images",))


class Points(Modality):
    name = "points"
    description = "2-D point clouds"
    data_config = PointsData


MODALITY = Points()
'''
PLUGIN = "[genforge.families]\ntoymix = toy_plugin:FAMILY\n\n" \
         "[genforge.modalities]\npoints = toy_plugin:MODALITY\n"


@pytest.fixture
def install(tmp_path, monkeypatch):
    """install(entry_points_txt): the toy package installed on sys.path; afterwards the
    registry finds genforge's own again."""

    def install(entry_points: str, module: str = TOY) -> None:
        (tmp_path / "toy_plugin.py").write_text(module)
        info = tmp_path / "toy_plugin-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(entry_points)
        monkeypatch.syspath_prepend(str(tmp_path))
        registry.reload()

    yield install
    monkeypatch.undo()
    sys.modules.pop("toy_plugin", None)
    registry.reload()


def test_a_plugin_family_and_modality_are_found_and_build_run_configs(install):
    own = set(registry.families())
    install(PLUGIN)
    families = registry.families()
    assert set(families) == own | {"toymix"}
    assert list(families) == sorted(families)  # alphabetical, plug-ins among genforge's own
    assert registry.get_family("toymix").description == "A Gaussian mixture"
    assert registry.get_modality("points").description == "2-D point clouds"
    assert registry.sample_options()["spread"].maximum == 10.0
    cfg = registry.build_run_config({"family": "toymix", "model": {"components": 5},
                                     "data": {"points": 7}}, source="toy.yaml")
    assert (cfg.modality, cfg.model.components, cfg.data.points) == ("points", 5, 7)


def test_after_reload_the_plugin_is_gone(install):
    assert "toymix" not in registry.families()  # the previous test's plug-in left nothing


def test_a_plugin_naming_an_existing_family_is_refused_naming_both(install):
    install("[genforge.families]\ngan = toy_plugin:CLASH\n")
    with pytest.raises(ConfigError) as info:
        registry.families()
    message = str(info.value)
    assert message == ("family 'gan' is defined twice: genforge.families.gan.spec:FAMILY and "
                       "toy_plugin:CLASH (entry point 'gan')")


@pytest.mark.parametrize(("target", "why"), [
    ("toy_plugin:MISSING", "AttributeError"),
    ("no_such_module:FAMILY", "ModuleNotFoundError"),
])
def test_a_broken_entry_point_is_named(install, target, why):
    install(f"[genforge.families]\nbroken = {target}\n")
    with pytest.raises(ConfigError) as info:
        registry.families()
    message = str(info.value)
    assert message.startswith(f"entry point 'broken' of genforge.families ({target}) does not "
                              f"load: {why}")
    assert "\n" not in message


def test_a_plugin_object_of_the_wrong_kind_is_refused(install):
    install("[genforge.families]\npoints = toy_plugin:MODALITY\n")
    with pytest.raises(ConfigError, match=r"toy_plugin:MODALITY \(entry point 'points'\): "
                                          r"not a FamilySpec"):
        registry.families()


def test_presets_of_genforge_config_path_are_found(tmp_path, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    source = registry.PRESETS["mnist-dcgan"].read_text()
    (mine / "my-dcgan.yaml").write_text(source)
    folders = [str(tmp_path / "absent"), str(mine)]  # a folder not there is no error
    monkeypatch.setenv(registry.CONFIG_PATH_ENV, os.pathsep.join(folders))
    assert registry.presets()["my-dcgan"] == (mine / "my-dcgan.yaml").resolve()
    cfg = registry.load_config("my-dcgan", ["train.max_steps=7"])
    assert (cfg.preset, cfg.train.max_steps) == ("my-dcgan", 7)


def test_a_preset_name_found_twice_is_refused_naming_both_files(tmp_path, monkeypatch):
    (tmp_path / "mnist-vae.yaml").write_text("family: vae\n")
    monkeypatch.setenv(registry.CONFIG_PATH_ENV, str(tmp_path))
    with pytest.raises(ConfigError) as info:
        registry.presets()
    shipped = Path(registry.PRESET_DIR / "mnist-vae.yaml").resolve()
    assert str(info.value) == (f"preset 'mnist-vae' is defined twice: {shipped} and "
                               f"{(tmp_path / 'mnist-vae.yaml').resolve()}")
