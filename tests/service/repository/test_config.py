"""ModelServerConfig parsing, version policies and repository scans: pure logic on text and tmp dirs."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from string import Template

import pytest

from service.repository.config import (ConfigError, ModelSpec, VersionPolicy, load_model_config, parse_model_config,
                                       specs_from_repository)
from service.repository.discovery import scan_versions


def one(text: str, **kwargs) -> ModelSpec:
    specs = parse_model_config(text, **kwargs)
    assert len(specs) == 1
    return specs[0]


def model(body: str, name: str = "m", base_path: str = "/models/m") -> str:
    return f'model_config_list {{ config {{ name: "{name}" base_path: "{base_path}" {body} }} }}'


# --- VersionPolicy.select -------------------------------------------------------------------------------------


def test_latest_selects_the_highest():
    assert VersionPolicy("latest", 2).select([1, 3, 7]) == {3, 7}
    assert VersionPolicy("latest", 1).select({7, 1, 3}) == {7}


def test_latest_with_fewer_versions_than_count_selects_all_and_empty_stays_empty():
    assert VersionPolicy("latest", 5).select([1, 3]) == {1, 3}
    assert VersionPolicy("latest", 1).select([]) == set()


def test_all_selects_everything():
    assert VersionPolicy("all").select([1, 3, 7]) == {1, 3, 7}


def test_specific_selects_only_present_versions():
    policy = VersionPolicy("specific", versions=(3, 9, 1))
    assert policy.select([1, 3, 7]) == {1, 3}
    assert policy.select([7]) == set()


@pytest.mark.parametrize("kwargs", [{"kind": "newest"}, {"kind": "latest", "count": 0}])
def test_invalid_policy_is_rejected(kwargs):
    with pytest.raises(ValueError):
        VersionPolicy(**kwargs)


def test_model_spec_defaults_and_frozen_labels():
    spec = ModelSpec("m", "/models/m")
    assert spec.base_path == Path("/models/m")
    assert spec.policy == VersionPolicy("latest", 1)
    assert spec.labels == {}
    labelled = ModelSpec("m", Path("/x"), labels={"stable": 1})
    with pytest.raises(TypeError):
        labelled.labels["canary"] = 2
    assert hash(labelled) == hash(ModelSpec("m", Path("/x"), labels={"stable": 1}))


# --- parse_model_config: policies and labels --------------------------------------------------------------------


def test_no_policy_means_latest_one():
    spec = one(model(""))
    assert spec == ModelSpec("m", Path("/models/m"), VersionPolicy("latest", 1), {})


@pytest.mark.parametrize("policy, expected", [
    ("latest { num_versions: 2 }", VersionPolicy("latest", 2)),
    ("latest { }", VersionPolicy("latest", 1)),
    ("all { }", VersionPolicy("all")),
    ("specific { versions: 124 versions: 123 }", VersionPolicy("specific", versions=(123, 124))),
])
def test_version_policies(policy, expected):
    assert one(model(f"model_version_policy {{ {policy} }}")).policy == expected


def test_empty_specific_policy_is_an_error():
    with pytest.raises(ConfigError, match="lists no versions"):
        parse_model_config(model("model_version_policy { specific { } }"))


def test_labels_with_specific_policy():
    spec = one(model("model_version_policy { specific { versions: 123 versions: 124 } } "
                     'version_labels { key: "stable" value: 123 } version_labels { key: "canary" value: 124 }'))
    assert dict(spec.labels) == {"stable": 123, "canary": 124}


def test_label_outside_specific_policy_is_an_error():
    with pytest.raises(ConfigError, match="'canary' points at version 125"):
        parse_model_config(model("model_version_policy { specific { versions: 123 } } "
                                 'version_labels { key: "canary" value: 125 }'))


def test_label_under_latest_policy_cannot_be_checked_and_is_allowed():
    spec = one(model('version_labels { key: "canary" value: 999 }'))
    assert dict(spec.labels) == {"canary": 999}


def test_negative_label_is_an_error():
    with pytest.raises(ConfigError, match="not negative"):
        parse_model_config(model('version_labels { key: "x" value: -1 }'))


# --- parse_model_config: paths, names, platform, syntax ---------------------------------------------------------


def test_relative_base_path_resolved_against_relative_to(tmp_path):
    assert one(model("", base_path="m"), relative_to=tmp_path).base_path == tmp_path / "m"
    assert one(model("", base_path="/abs/m"), relative_to=tmp_path).base_path == Path("/abs/m")
    assert one(model("", base_path="m")).base_path == Path("m")


def test_load_model_config_resolves_against_the_file_directory_and_names_it(tmp_path):
    path = tmp_path / "models.config"
    path.write_text(model("", base_path="m"))
    assert load_model_config(path)[0].base_path == tmp_path / "m"
    path.write_text("model_config_list { config { name: 'x' } }")
    with pytest.raises(ConfigError, match=re.escape(str(path)) + ".*base_path is missing"):
        load_model_config(path)


def test_load_model_config_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_model_config(tmp_path / "nope.config")


def test_several_models_keep_file_order():
    text = ('model_config_list { config { name: "b" base_path: "/b" } '
            'config { name: "a" base_path: "/a" model_version_policy { all {} } } }')
    assert [(s.name, s.policy.kind) for s in parse_model_config(text)] == [("b", "latest"), ("a", "all")]


def test_duplicate_names_are_an_error():
    text = 'model_config_list { config { name: "m" base_path: "/a" } config { name: "m" base_path: "/b" } }'
    with pytest.raises(ConfigError, match="configured twice"):
        parse_model_config(text)


@pytest.mark.parametrize("name", ["../x", "a/b", "", "..", ".hidden", "a b"])
def test_bad_names_are_an_error(name):
    with pytest.raises(ConfigError, match="not a valid model name"):
        parse_model_config(model("", name=name))


@pytest.mark.parametrize("name", ["m", "half_plus_two", "resnet-50.v2", "0model"])
def test_good_names(name):
    assert one(model("", name=name)).name == name


@pytest.mark.parametrize("url", ["s3://bucket/models/m", "gs://bucket/m", "gcs://bucket/m/"])
def test_object_store_base_path_is_kept_as_a_url(url, tmp_path):
    spec = parse_model_config(model("", base_path=url), relative_to=tmp_path)[0]
    assert spec.base_path == url  # not a Path (which folds '//'), not joined to the file's folder


@pytest.mark.parametrize("url, why", [("http://host/m", "http:// is not supported"),
                                      ("hdfs://nn/m", "hdfs:// is not supported"),
                                      ("s3://key:secret@bucket/m", "must not hold credentials"),
                                      ("s3://B/m", "not a valid bucket name"),
                                      ("s3://bucket/../m", "'..' are not allowed")])
def test_bad_url_base_path_is_an_error(url, why):
    with pytest.raises(ConfigError, match=why) as caught:
        parse_model_config(model("", base_path=url))
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("platform, ok", [("tensorflow", True), ("", True), ("tensorrt", False), ("pytorch", False)])
def test_platform(platform, ok):
    text = model(f'model_platform: "{platform}"')
    if ok:
        assert one(text).name == "m"
    else:
        with pytest.raises(ConfigError, match="model_platform"):
            parse_model_config(text)


def test_model_type_other_is_an_error():
    with pytest.raises(ConfigError, match="model_type"):
        parse_model_config(model("model_type: OTHER"))


def test_custom_model_config_is_an_error():
    with pytest.raises(ConfigError, match="custom_model_config"):
        parse_model_config("custom_model_config { }")


@pytest.mark.parametrize("text", ['model_config_list { config { name: "m" ', "nonsense_field: 1",
                                  'model_config_list { config { name: m } }'])
def test_syntax_errors_carry_the_parser_message(text):
    with pytest.raises(ConfigError, match=r"not a valid ModelServerConfig text proto: \d+:\d+"):
        parse_model_config(text, source="x.config")


def test_empty_config_serves_nothing():
    assert parse_model_config("") == []
    assert parse_model_config("model_config_list { }") == []


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# --- TF Serving's own config files ------------------------------------------------------------------------------


def test_good_testdata_config(testdata):
    two, three = testdata / "saved_model_half_plus_two_cpu", testdata / "saved_model_half_plus_three"
    text = Template((testdata / "good_model_config.txt").read_text()).substitute(
        TEST_HALF_PLUS_TWO_DIR=str(two), TEST_HALF_PLUS_THREE_DIR=str(three))
    specs = parse_model_config(text)
    assert specs == [ModelSpec("half_plus_two", two), ModelSpec("half_plus_three", three)]
    # The specs and the scan together pick the one version TF Serving's tests expect.
    for spec in specs:
        assert spec.policy.select(scan_versions(spec.base_path)) == {123}


def test_bad_testdata_config_is_a_syntax_error(testdata):
    # The file is the text "improperly formatted file": a syntax error, detected statically.
    with pytest.raises(ConfigError, match='1:1 .*no field named "improperly"') as info:
        load_model_config(testdata / "bad_model_config.txt")
    assert "bad_model_config.txt" in str(info.value)


# --- specs_from_repository --------------------------------------------------------------------------------------


def test_specs_from_repository(tmp_path, caplog):
    for name in ("b", "a", ".hidden", "bad name", "c.v2"):
        (tmp_path / name).mkdir()
    (tmp_path / "models.config").write_text("")
    with caplog.at_level(logging.WARNING, logger="service.repository.config"):
        specs = specs_from_repository(tmp_path)
    # An invalid name is worth a warning; hidden directories (.git, .tmp copies) are skipped silently.
    assert "'bad name'" in caplog.text and ".hidden" not in caplog.text
    assert specs == [ModelSpec("a", tmp_path / "a"), ModelSpec("b", tmp_path / "b"),
                                               ModelSpec("c.v2", tmp_path / "c.v2")]


def test_specs_from_testdata_repository(testdata):
    names = [s.name for s in specs_from_repository(testdata)]
    assert names == ["saved_model_half_plus_three", "saved_model_half_plus_two_2_versions",
                     "saved_model_half_plus_two_cpu"]


def test_specs_from_missing_repository(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        specs_from_repository(tmp_path / "nope")
