"""Loader of the released V-IRL data, tested on tiny fixture folders in the real format."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from sftvrl.envs.virl import VirlEnv
from sftvrl.envs.virl.geometry import to_latlng
from sftvrl.envs.virl.real import (
    RealDataError,
    RealSource,
    cut_perspective,
    export_routes,
    load_mapping,
    load_routes,
    resolve_data_dir,
)
from sftvrl.envs.virl.sources import SyntheticSource

PANO_W, PANO_H = 72, 36


def coded_panorama(_pano_id: str, _xy) -> np.ndarray:
    """A small equirectangular image whose red channel encodes longitude (2 px per 10°)."""
    img = np.zeros((PANO_H, PANO_W, 3), np.uint8)
    img[..., 0] = (np.arange(PANO_W) * 255 // (PANO_W - 1))[None, :]
    img[PANO_H // 2 - 1 : PANO_H // 2 + 1, :, 1] = 255  # horizon line
    return img


@pytest.fixture(scope="module")
def fixture_folder(tmp_path_factory) -> tuple[Path, SyntheticSource]:
    """The first mini-benchmark city's two routes, exported in the released format."""
    source = SyntheticSource("mini")
    base = tmp_path_factory.mktemp("virl") / "VLN_mini"
    export_routes(source.city(0), [source.route(0), source.route(1)], base, panorama=coded_panorama)
    return base, source


def test_export_writes_the_released_format(fixture_folder):
    base, _ = fixture_folder
    data = json.loads((base / "route_infos.json").read_text())
    assert isinstance(data, list) and len(data) == 2 and data[1] == 2
    route = data[0][0]
    assert len(route["start_place"]["relocated_geocode"]) == 2
    blocks = route["milestone_info"].count('"to_next_intersection_heading"')
    assert blocks == len(route["route_results"]["geocode_list"])
    assert route["init_heading"] == 0
    mapping = pickle.loads((base / "gps_pano_mapping.pkl").read_bytes())
    key, pano = next(iter(mapping.items()))
    assert isinstance(key, tuple) and len(key) == 2 and isinstance(pano, str)
    assert (base / "street_views" / f"{pano}.jpg").is_file()
    assert "rotation" in json.loads((base / "street_views" / f"{pano}.metadata.json").read_text())


def test_real_loader_gives_the_same_rails_as_the_synthetic_source(fixture_folder):
    base, _ = fixture_folder
    real = VirlEnv(split="mini", source=base)
    synth = VirlEnv(split="mini")
    assert len(real.source) == 2
    for k in range(2):
        for seed in range(4):
            _, ri = real.reset(seed=seed, options={"route_index": k})
            _, si = synth.reset(seed=seed, options={"route_index": k})
            assert ri["instruction"] == si["instruction"]
            fields = (
                "viewpoint",
                "kind",
                "absolute_action",
                "relative_action",
                "observation",
                "instruction",
            )
            for a, b in zip(real.rail.entries, synth.rail.entries, strict=True):
                assert all(getattr(a, f) == getattr(b, f) for f in fields)
            assert ri["prompt"] == si["prompt"]


def test_expert_is_perfect_on_real_format_data_with_vision(fixture_folder):
    base, _ = fixture_folder
    env = VirlEnv(vision=True, split="mini", source=base, view_size=48)
    for seed in range(2):
        grid, _ = env.reset(seed=seed)
        assert grid.shape == (101, 101, 3)
        while True:
            grid, reward, term, trunc, info = env.step(env.expert_response())
            assert reward == 1.0
            if term or trunc:
                break
        assert info["is_success"]


def test_cut_perspective_faces_the_requested_heading():
    pano = coded_panorama("x", None).astype(np.uint8)
    for heading in (0.0, 90.0, 200.0):
        view = cut_perspective(pano, heading, size=33)
        centre_col = (heading / 360.0 + 0.5) % 1.0 * PANO_W
        expected_red = np.interp(centre_col - 0.5, np.arange(PANO_W), pano[0, :, 0].astype(float))
        assert abs(int(view[5, 16, 0]) - expected_red) <= 8
        assert view[16, :, 1].min() > 100  # the horizon is the middle row
        assert view[0, :, 1].max() < 50
    # rotation moves the panorama's centre column to compass bearing `rotation`.
    a = cut_perspective(pano, 120.0, size=17, rotation=30.0)
    b = cut_perspective(pano, 90.0, size=17)
    assert np.array_equal(a, b)
    # The 90° field of view: the left and right edges are 45° either side.
    v = cut_perspective(pano, 180.0, size=65)
    left = (135 / 360 + 0.5) % 1 * PANO_W
    assert (
        abs(int(v[5, 0, 0]) - np.interp(left - 0.5, np.arange(PANO_W), pano[0, :, 0].astype(float)))
        <= 12
    )


def test_hand_written_route_file(tmp_path):
    """An independent fixture written the way V-IRL's collector does, trailing commas included."""
    origin = (37.7880, -122.4075)
    start = to_latlng((0.0, 0.0), origin)
    turn = to_latlng((0.0, 60.0), origin)
    dest = to_latlng((50.0, 60.0), origin)
    info = (
        '{\n    "intersection_idx": "1",\n    "landmarks": "Hotel 32One is on your right behind",\n'
        '    "distance": "60.0 meters",\n    "human_heading": "0",\n'
        '    "to_next_intersection_heading": "0 (north)",\n}\n'
        '{\n    "intersection_idx": "2",\n'
        '    "landmarks": "The destination Cafe de la Presse is on your right",\n'
        '    "distance": "50.0 meters",\n    "human_heading": "0",\n'
        '    "to_next_intersection_heading": "90 (east)",\n}'
    )
    route = {
        "start_place": {"name": "S", "relocated_geocode": list(start)},
        "dest_place": {"name": "Cafe de la Presse", "geocode": list(dest)},
        "route_results": {"geocode_list": [list(turn), list(dest)], "landmark_list": [None]},
        "init_heading": 0,
        "milestone_info": info,
    }
    (tmp_path / "route_infos.json").write_text(json.dumps([[route], 7]))
    routes = load_routes(tmp_path / "route_infos.json", origin)
    (r,) = routes
    assert [m.compass for m in r.milestones] == ["north", "east"]
    assert [m.bearing for m in r.milestones] == [0, 90]
    assert r.milestones[0].landmark == "Hotel 32One"
    assert r.milestones[1].landmark == "Cafe de la Presse" and r.milestones[1].is_destination
    assert r.milestones[1].xy == pytest.approx((50.0, 60.0), abs=1e-6)
    # A matching mapping (a panorama every 5 m) makes it a full data folder the env can run.
    pts = [(0.0, float(y)) for y in range(0, 61, 5)] + [(float(x), 60.0) for x in range(5, 51, 5)]
    mapping = {to_latlng(p, origin): f"p{k}" for k, p in enumerate(pts)}
    (tmp_path / "gps_pano_mapping.pkl").write_bytes(pickle.dumps(mapping))
    (tmp_path / "street_views").mkdir()
    env = VirlEnv(split="id", source=tmp_path)
    _, info0 = env.reset(seed=0)
    assert info0["instruction"].endswith(
        "2. Move forward until you reach next intersection where Hotel 32One is on your right behind.\n"
        "3. Turn right to face east.\n"
        "4. Move forward until you reach destination where The destination Cafe de la Presse is on "
        "your right."
    )
    assert (
        env.rail.entries[-1].observation == "The destination Cafe de la Presse is on your right; "
    )
    turn_entry = next(e for e in env.rail.entries if e.kind == "turn")
    assert (
        turn_entry.observation == "Hotel 32One is on your right behind; You observe an intersection"
    )
    assert turn_entry.absolute_action == "turn_direction(east)"
    report = env.source.doctor()
    assert report["routes"] == 1 and report["routes_with_unsnapped_points"] == []
    assert len(report["missing_panoramas"]) == 3  # start, turn, destination have no jpg here
    # VL needs the panorama files: it fails loudly, naming the file.
    vl = VirlEnv(vision=True, split="id", source=tmp_path)
    with pytest.raises(RealDataError, match=r"panorama 'p0' is missing"):
        vl.reset(seed=0)


def test_missing_folder_and_files_fail_loudly(tmp_path):
    with pytest.raises(RealDataError, match=r"does not exist.*tianzhechu/SFTvsRL_Data"):
        VirlEnv(source=tmp_path / "nowhere")
    with pytest.raises(RealDataError, match=r"no route_infos\.json"):
        resolve_data_dir(tmp_path, "id")
    (tmp_path / "route_infos.json").write_text("[[], 0]")
    with pytest.raises(RealDataError, match=r"missing gps_pano_mapping.pkl, street_views/"):
        resolve_data_dir(tmp_path, "id")
    with pytest.raises(ValueError, match="held-out"):
        resolve_data_dir(tmp_path, "heldout")


def test_parent_folder_picks_the_split_subfolder(fixture_folder):
    base, _ = fixture_folder
    parent = base.parent
    assert resolve_data_dir(parent, "mini") == base
    assert resolve_data_dir(parent, "visual_ood") == base
    with pytest.raises(RealDataError, match="nyc_1k_routes"):
        resolve_data_dir(parent, "id")
    assert RealSource(parent, "mini").ordered


def test_malformed_files_are_reported(tmp_path):
    (tmp_path / "route_infos.json").write_text('{"not": "a list"}')
    with pytest.raises(RealDataError, match=r"\[route_list, count\]"):
        load_routes(tmp_path / "route_infos.json")
    bad = {
        "start_place": {"relocated_geocode": [1.0, 2.0]},
        "route_results": {"geocode_list": [[1.0, 2.0], [1.0, 2.001]]},
        "milestone_info": '{"landmarks": "No landmark nearby", "to_next_intersection_heading": "0 (north)"}',
    }
    (tmp_path / "route_infos.json").write_text(json.dumps([[bad], 1]))
    with pytest.raises(RealDataError, match="1 milestone_info blocks but 2 geocodes"):
        load_routes(tmp_path / "route_infos.json")
    del bad["start_place"]
    (tmp_path / "route_infos.json").write_text(json.dumps([[bad], 1]))
    with pytest.raises(RealDataError, match="missing field"):
        load_routes(tmp_path / "route_infos.json")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_mapping_loader_refuses_code(tmp_path):
    path = tmp_path / "gps_pano_mapping.pkl"
    path.write_bytes(pickle.dumps({(1.0, 2.0): Evil()}))
    with pytest.raises(RealDataError, match="only plain dicts"):
        load_mapping(path)
    path.write_bytes(pickle.dumps({(1.0, 2.0): "pano", (np.float64(1.5), np.float64(2.0)): "p2"}))
    assert load_mapping(path) == {(1.0, 2.0): "pano", (1.5, 2.0): "p2"}
