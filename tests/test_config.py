from pathlib import Path

import pytest

from geotl.config import load_region
from geotl.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

BASE = """name = "my-region"
classes = ["tree"]
[imagery]
paths = ["img/*.tif"]
bands = ["red", "green", "blue"]
[labels]
path = "labels.geojson"
class_field = "label"
class_map = { Tree = "tree" }
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.tif").write_bytes(b"")
    (tmp_path / "labels.geojson").write_text("{}")
    return tmp_path


def _load(folder: Path, text: str) -> object:
    path = folder / "r.toml"
    path.write_text(text)
    return load_region(path)


def test_demo_region_loads() -> None:
    region = load_region(REPO / "regions" / "demo-osbs.toml")
    assert region.name == "demo-osbs" and region.classes == ["tree"]
    assert region.chips.size_px == 64 and region.chips.stride == 64
    assert all(p.is_file() for p in region.scene_paths())
    assert region.labels_path().is_file()


def test_sensor_spellings_and_custom_bands_load(folder: Path) -> None:
    # WorldView-3 / PlanetScope / Landsat community spellings, and bands of one's own
    from geotl.bands import canonical_bands

    text = BASE.replace(
        'bands = ["red", "green", "blue"]',
        'bands = ["coastal_blue", "yellow", "red_edge", "nir2", "swir1", "custom:NDVI"]',
    )
    region = _load(folder, text)
    assert canonical_bands(region.imagery.bands) == [  # type: ignore[attr-defined]
        "coastal",
        "yellow",
        "rededge",
        "nir09",
        "swir16",
        "custom:ndvi",
    ]


def test_landsat_oli_band_ids_load(folder: Path) -> None:
    oli = '["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"]'
    region = _load(folder, BASE.replace('["red", "green", "blue"]', oli))
    assert len(region.imagery.bands) == 7  # type: ignore[attr-defined]


def test_paths_resolve_relative_to_file(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    region = _load(folder, BASE)
    assert region.scene_paths() == [folder / "img" / "a.tif"]  # type: ignore[attr-defined]
    assert region.labels_path() == folder / "labels.geojson"  # type: ignore[attr-defined]
    assert region.split.seed == 0 and region.labels.unmapped == "error"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t + "[chips]\nsize_pz = 3\n", r"r\.toml: unknown key 'chips.size_pz'"),
        (lambda t: t + "[chips]\nsize_px = 'big'\n", r"'chips.size_px'"),
        (
            lambda t: t.replace('"img/*.tif"', '"nope/*.tif"'),
            r"imagery.paths: 'nope/\*.tif' matches no file",
        ),
        (
            lambda t: t.replace('"blue"', '"bleu"'),
            r"unknown band name\(s\) \['bleu'\]: .* written 'custom:bleu'",
        ),
        # Earth Engine's Sentinel-2 "B8" (nir) was read as Landsat's panchromatic band
        (
            lambda t: t.replace('["red", "green", "blue"]', '["B4", "B3", "B2", "B8"]'),
            r"band id\(s\) \['B4', 'B3', 'B2', 'B8'\] are ambiguous .* \('B04'\)",
        ),
        # Landsat 7's SR_B1..SR_B5 (blue .. swir16) were read as OLI's (coastal .. nir08)
        (
            lambda t: t.replace(
                '["red", "green", "blue"]', '["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B7"]'
            ),
            r"SR_B5 and SR_B7 without SR_B6 look like Landsat 4-7 .* write the common names",
        ),
        (
            lambda t: t.replace('Tree = "tree"', 'Tree = "trees"'),
            r"unknown class\(es\) \['trees'\]",
        ),
        (
            lambda t: t.replace("labels.geojson", "missing.geojson"),
            r"labels.path: file 'missing.geojson' not found",
        ),
        (lambda t: t + 'unmapped = "drop"\n', r"'labels.unmapped'"),
        # a class_map without class_field was ignored: every feature became classes[0]
        (
            lambda t: t.replace('class_field = "label"\n', ""),
            r"'labels': class_map needs class_field: add class_field = ",
        ),
        (
            lambda t: t.replace('class_field = "label"\n', "") + 'unmapped = "skip"\n',
            r"class_map and unmapped need class_field",
        ),
        # a class named 'ignore' crashed chip (its px_ column is the ignore pixels' count)
        (
            lambda t: t.replace('["tree"]', '["ignore", "tree"]'),
            r"'classes': 'ignore' names the chips' unlabelled pixels: rename that class",
        ),
        (
            lambda t: t.replace('["tree"]', '["tree", " "]'),
            r"'classes': class names must not be blank",
        ),
        (lambda t: t + "[split]\nval_fraction = 0.6\ntest_fraction = 0.5\n", r"must be below 1"),
        # epochs won silently: steps = 30 ran 20 epochs of at least 400 windows
        (
            lambda t: t + "[model]\nsteps = 30\nepochs = 20\n",
            r"'model': steps = 30 and epochs = 20 both set the training length: keep one",
        ),
        (
            lambda t: t + '[split]\ntest_within = "areas.gpkg"\n',
            r"split.test_within: file 'areas.gpkg' not found",
        ),
        (lambda t: t.replace('name = "my-region"', 'name = "My Region"'), r"'name'"),
        # [monitor]: the keys common to all sources, then the named source's own keys
        (lambda t: t + '[monitor]\nsource = "ftp"\n', r"'monitor.source': not a scene source"),
        (lambda t: t + "[monitor]\npath = ['in/*.tif']\n", r"unknown key 'monitor.path'"),
        (lambda t: t + '[monitor]\nsource = "folder"\n', r"missing required key 'monitor.paths'"),
        (
            lambda t: t + "[monitor]\npaths = ['in/*.tif']\ndatetime_regex = '_\\d{8}'\n",
            r"'monitor.datetime_regex': needs one capture group",
        ),
        (
            lambda t: (
                t + '[monitor]\nsource = "stac"\nurl = "https://x"\nassets = { red = "B04" }\n'
            ),
            r"missing required key 'monitor.collection'",
        ),
        (
            lambda t: (
                t
                + '[monitor]\nsource = "stac"\nurl = "https://x"\ncolection = "s2"\nassets = { red = "B04" }\n'
            ),
            r"unknown key 'monitor.colection'",
        ),
        (
            lambda t: (
                t
                + '[monitor]\nsource = "stac"\nurl = "https://x"\ncollection = "s2"\nassets = {}\n'
                + "paths = ['in/*.tif']\n"
            ),
            r"unknown key 'monitor.paths'",
        ),
        (
            lambda t: t + "[monitor]\npaths = ['in/*.tif']\naoi = 'aoi.gpkg'\n",
            r"monitor.aoi: file 'aoi.gpkg' not found",
        ),
    ],
)
def test_bad_region_files(folder: Path, edit, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ConfigError, match=match) as info:
        _load(folder, edit(BASE))
    assert "\n" not in str(info.value)


def test_monitor_keys_stay_flat_and_typed(folder: Path) -> None:
    from geotl.monitor.sources import FolderOptions, StacOptions

    folder_region = _load(folder, BASE + "[monitor]\nevery = '6h'\npaths = ['in/*.tif']\n")
    monitor = folder_region.monitor  # type: ignore[attr-defined]
    assert (monitor.source, monitor.every) == ("folder", "6h")
    assert monitor.options == FolderOptions(paths=["in/*.tif"])
    stac = 'source = "stac"\nurl = "https://x"\ncollection = "s2"\nassets = { red = "B04" }\n'
    stac_region = _load(folder, BASE + "[monitor]\n" + stac)
    assert stac_region.monitor.options == StacOptions(  # type: ignore[attr-defined]
        url="https://x", collection="s2", assets={"red": "B04"}
    )


def test_not_toml_and_missing(folder: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        _load(folder, "name = ")
    with pytest.raises(ConfigError, match="region file not found"):
        load_region(folder / "absent.toml")
    # the region's folder given for its file: said so, with the files it holds
    (folder / "r.toml").write_text("")
    with pytest.raises(ConfigError, match=r"is a folder: give the region's \.toml.*\(r\.toml\)"):
        load_region(folder)


def test_scene_globs_leave_gdal_sidecars_out(folder: Path) -> None:
    """`imagery/*` took a scene's .aux.xml (QGIS writes one on opening it) for a scene."""
    for name in ("a.tif.aux.xml", "a.tif.ovr", "a.tfw", "b.tif"):
        (folder / "img" / name).write_bytes(b"")
    region = _load(folder, BASE.replace('"img/*.tif"', '"img/*"'))
    assert [p.name for p in region.scene_paths()] == ["a.tif", "b.tif"]  # type: ignore[attr-defined]


def test_windows_editors_files_load(folder: Path) -> None:
    """A byte-order mark and CRLF line ends (Notepad's UTF-8) load; Latin-1 says what to do."""
    path = folder / "r.toml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.replace("\n", "\r\n").encode())
    assert load_region(path).name == "my-region"
    path.write_bytes(BASE.replace("my-region", "caf\xe9").encode("latin-1"))
    with pytest.raises(ConfigError, match=r"r\.toml: not UTF-8 text \(.*\): save it as UTF-8"):
        load_region(path)


def test_a_base_model_path_in_the_region_file_is_relative_to_it(tmp_path, monkeypatch):
    from geotl.train import TrainOptions
    from geotl.train.options import resolve_settings

    (tmp_path / "regions").mkdir()
    (tmp_path / "regions" / "s.tif").write_bytes(b"")  # the glob must match; never opened
    path = tmp_path / "regions" / "r.toml"
    path.write_text(
        'name = "r"\nclasses = ["a"]\n[imagery]\npaths = ["*.tif"]\nbands = ["red"]\n'
        '[model]\nbase = "model:../runs/source"\n'
    )
    monkeypatch.chdir(tmp_path)  # run from elsewhere than the region file's folder
    settings = resolve_settings([load_region(path)], TrainOptions())
    assert settings.base == f"model:{tmp_path / 'regions' / '..' / 'runs' / 'source'}"
    # --base on the command line stays relative to where the command runs
    assert resolve_settings([load_region(path)], TrainOptions(base="model:m")).base == "model:m"


def test_an_output_folder_holding_a_watched_incoming_folder_is_refused(folder: Path) -> None:
    """chip/train/run --out incoming --overwrite would delete the passes a monitor waits on."""
    region = _load(folder, BASE + '[monitor]\nsource = "folder"\npaths = ["incoming/*.tif"]\n')
    assert (folder / "incoming").resolve() in region.input_paths()  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="holds this region's input"):
        region.check_output_dir(folder / "incoming")  # type: ignore[attr-defined]
    region.check_output_dir(folder / "out")  # type: ignore[attr-defined]
