"""Config loading, overrides and every kind of bad input (ConfigError naming the key)."""

from __future__ import annotations

import pytest

from gossip.config import Config, describe_keys, load_config, parse_override
from gossip.errors import ConfigError

Q = ["problem.name=quadratic"]


def test_defaults_and_overrides():
    cfg = load_config(None, [*Q, "topology.name=chain", "algorithm.lr=0.05", "nodes=8"])
    assert cfg["topology"]["name"] == "chain"
    assert cfg["algorithm"]["lr"] == 0.05
    assert cfg["nodes"] == 8
    assert cfg["seed"] == 0 and cfg["rounds"] >= 1 and cfg["topology"]["seed"] == 0
    assert cfg["algorithm"]["name"] == "dsgd" and cfg["compression"]["name"] == "none"
    assert cfg["problem"]["dim"] == 10  # the quadratic's own default, resolved


def test_parse_override_literals_and_strings():
    assert parse_override("algorithm.lr=0.5") == (["algorithm", "lr"], 0.5)
    assert parse_override("topology.shape=[4, 4]") == (["topology", "shape"], [4, 4])
    assert parse_override("topology.name=chain") == (["topology", "name"], "chain")
    assert parse_override('name="x y"') == (["name"], "x y")
    assert parse_override("problem.x=true") == (["problem", "x"], True)


def test_topology_seed_follows_run_seed():
    assert load_config(None, [*Q, "seed=7"])["topology"]["seed"] == 7
    assert load_config(None, [*Q, "seed=7", "topology.seed=3"])["topology"]["seed"] == 3


def test_file_then_overrides_and_roundtrip(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('nodes = 8\n[problem]\nname = "quadratic"\ndim = 3\n'
                    '[topology]\nname = "torus"\nshape = [2, 4]\n')
    cfg = load_config(path, ["problem.dim=5"])
    assert cfg["problem"]["dim"] == 5 and cfg["topology"]["shape"] == [2, 4]
    again = tmp_path / "again.toml"
    again.write_text(cfg.to_toml())
    assert load_config(again).to_dict() == cfg.to_dict()
    assert isinstance(cfg, Config)


@pytest.mark.parametrize(
    "overrides, needle",
    [
        (["bogus=1"], "'bogus'"),
        (["topology.bogus=1"], "topology.bogus"),
        (["algorithm.bogus=1"], "algorithm.bogus"),
        (["problem.bogus=1"], "problem.bogus"),
        (["nosuch.key=1"], "'nosuch'"),
        (["algorithm.name=nosuch"], "nosuch"),
        (["topology.name=nosuch"], "nosuch"),
        (["problem.name=nosuch"], "nosuch"),
        (["compression.name=nosuch"], "nosuch"),
        (["topology.weights=nosuch"], "topology.weights"),
        (["topology.schedule=nosuch"], "topology.schedule"),
        (["nodes=two"], "nodes"),
        (["nodes=1"], "nodes"),
        (["rounds=0"], "rounds"),
        (["eval_every=0"], "eval_every"),
        (["checkpoint_every=-1"], "checkpoint_every"),
        (["device=tpu"], "device"),
        (["dtype=float16"], "dtype"),
        (["algorithm.lr=0"], "algorithm.lr"),
        (["algorithm.lr=-0.1"], "algorithm.lr"),
        (["algorithm.lr=fast"], "algorithm.lr"),
        (["algorithm.lr_schedule=linear"], "algorithm.lr_schedule"),
        (["algorithm.local_steps=0"], "algorithm.local_steps"),
        (["data.bogus=1"], "data.bogus"),
        (["nodes"], "key=value"),
    ],
)
def test_bad_input_names_the_key(overrides, needle):
    with pytest.raises(ConfigError) as info:
        load_config(None, [*Q, *overrides])
    message = str(info.value)
    assert needle in message and "\n" not in message


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("nodes = = 3")
    with pytest.raises(ConfigError, match="is not a TOML file: .*line 1"):
        load_config(bad)
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(tmp_path)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_config("/dev/null")
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ConfigError, match="is not a TOML file: not UTF-8 text"):
        load_config(bad)


def test_describe_keys_lists_every_declared_key():
    text = describe_keys()
    for key in ("nodes", "rounds", "checkpoint_every", "topology.weights", "topology.shape",
                "algorithm.lr", "algorithm.lr_schedule", "algorithm.local_steps", "problem.dim",
                "algorithm.name = 'dsgd'", "problem.name = 'quadratic'"):
        assert key in text, key
