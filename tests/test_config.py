"""The strict config loader: official files load as they are; unknown or ill-typed keys name key and file."""

import pytest

from tests.helpers import TINY_YAML
from tracker import ConfigError, load_config
from tracker.config import available_configs


def test_official_variants_load_with_official_sizes():
    cfg = load_config("ostrack_vitb384_ce")
    bb = cfg.backbone
    assert (bb.embed_dim, bb.depth, bb.num_heads, bb.mlp_ratio) == (768, 12, 12, 4.0)
    assert (cfg.data.template.size, cfg.data.search.size) == (192, 384)
    assert (cfg.test.search_factor, cfg.test.template_factor) == (5.0, 2.0)
    assert bb.ce_loc == (3, 6, 9) and bb.ce_template_range == "CTR_POINT"
    assert {"ostrack_vitb256_ce", "ostrack_vitb384_ce", "ostrack_vitb256", "ostrack_vitb384"} <= set(
        available_configs()
    )


def test_tiny_yaml_sizes_come_from_its_own_keys():
    bb = load_config(TINY_YAML).backbone
    assert (bb.embed_dim, bb.depth, bb.num_heads) == (64, 12, 4)


def test_unknown_key_names_key_and_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("MODEL:\n  BACKBONE:\n    TYPE: vit_base_patch16_224\n    DEPHT: 3\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*MODEL\.BACKBONE\.DEPHT"):
        load_config(path)


def test_ill_typed_key_names_key_and_file(tmp_path):
    path = tmp_path / "typed.yaml"
    path.write_text("TEST:\n  SEARCH_SIZE: big\n")
    with pytest.raises(ConfigError, match=r"typed\.yaml.*TEST\.SEARCH_SIZE must be int"):
        load_config(path)


def test_unknown_backbone_type_needs_sizes(tmp_path):
    path = tmp_path / "custom.yaml"
    path.write_text("MODEL:\n  BACKBONE:\n    TYPE: my_vit\n    EMBED_DIM: 64\n")
    with pytest.raises(ConfigError, match="DEPTH, NUM_HEADS, MLP_RATIO"):
        load_config(path)


def test_unknown_name_lists_known_configs():
    with pytest.raises(ConfigError, match="ostrack_vitb256_ce"):
        load_config("no_such_model")


def test_search_size_must_fit_the_stride(tmp_path):
    path = tmp_path / "odd.yaml"
    path.write_text("DATA:\n  SEARCH:\n    SIZE: 250\n")
    with pytest.raises(ConfigError, match=r"multiple of MODEL\.BACKBONE\.STRIDE"):
        load_config(path)


def test_round_trip_through_yaml_text():
    from tracker.config import config_from_yaml_text

    cfg = load_config("ostrack_vitb256_ce")
    again = config_from_yaml_text(cfg.to_yaml(), source="round trip", name=cfg.name)
    assert again == cfg


def test_stem_must_be_known_and_conv_needs_a_power_of_two_stride(tmp_path):
    unknown = tmp_path / "stem.yaml"
    unknown.write_text("MODEL:\n  BACKBONE:\n    STEM: resnet\n")
    with pytest.raises(ConfigError, match=r"STEM 'resnet' is not one of"):
        load_config(unknown)
    odd = tmp_path / "stride.yaml"
    odd.write_text("DATA:\n  SEARCH:\n    SIZE: 240\n  TEMPLATE:\n    SIZE: 120\nMODEL:\n  BACKBONE:\n    STEM: conv\n"
                   "    STRIDE: 12\n")
    with pytest.raises(ConfigError, match="power of two"):
        load_config(odd)


def test_tracking_keep_ratios_default_to_the_trained_ones_and_can_be_set_for_tracking(tmp_path):
    official = load_config("ostrack_vitb256_ce")
    assert official.tracking_keep_ratios == official.backbone.ce_keep_ratio
    assert official.ce_keep_counts() == [180, 126, 89]
    bundled = load_config("bundled_small")
    assert bundled.backbone.ce_keep_ratio == (0.7, 0.7) and bundled.tracking_keep_ratios == (0.9, 0.9)
    assert bundled.ce_keep_counts() == [90, 81]
    from tracker.models.ostrack import build_model

    blocks = build_model(bundled).backbone.blocks
    assert [blocks[i].keep_ratio for i in bundled.backbone.ce_loc] == [0.9, 0.9]
    short = tmp_path / "short.yaml"
    short.write_text("TEST:\n  CE_KEEP_RATIO: [0.9]\n")
    with pytest.raises(ConfigError, match=r"one ratio per MODEL\.BACKBONE\.CE_LOC block"):
        load_config(short)
    off = tmp_path / "off.yaml"
    off.write_text("MODEL:\n  BACKBONE:\n    CE_LOC: [3]\n    CE_KEEP_RATIO: [0.7]\nTEST:\n  CE_KEEP_RATIO: [1.0]\n")
    with pytest.raises(ConfigError, match="below 1"):
        load_config(off)


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        ("TRACK:\n  REDETECT:\n    COLOUR_CONTRAST: 0.5\n", r"TRACK\.REDETECT\.COLOUR_CONTRAST must be at least 1"),
        ("TRACK:\n  REDETECT:\n    COLOUR_MEMORY: -1\n", r"TRACK\.REDETECT\.COLOUR_MEMORY must be 0 or more"),
    ],
)
def test_the_search_and_presence_settings_refuse_what_cannot_work(tmp_path, yaml_text, expected):
    path = tmp_path / "track.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=expected):
        load_config(path)
