"""Checkpoints: self-describing round trip; missing, truncated and foreign files refused safely."""

import pickle

import pytest
import torch
from tiny_checkpoint import make_tiny_checkpoint

from depth_defocus_ros.model.checkpoint import CheckpointError, build_model, load_checkpoint


def test_round_trip(tmp_path):
    p = make_tiny_checkpoint(tmp_path / "m.pt")
    ck = load_checkpoint(p)
    model = build_model(ck, p)
    assert model.config.channels == [8, 8, 16, 16, 16]
    assert ck["process_long_side"] == 128 and "lens_ranges" in ck


def test_missing(tmp_path):
    with pytest.raises(CheckpointError, match="not found.*expected"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated(tmp_path):
    p = make_tiny_checkpoint(tmp_path / "m.pt")
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(p)


class Evil:
    def __reduce__(self):
        return (print, ("code ran from a checkpoint",))


# torch warns about the foreign file's pickle protocol before refusing it: expected here
@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_foreign_files_and_code_are_refused(tmp_path, capsys):
    p = tmp_path / "evil.pt"
    with open(p, "wb") as fh:
        pickle.dump({"format": "x", "payload": Evil()}, fh)
    with pytest.raises(CheckpointError):
        load_checkpoint(p)
    assert "code ran" not in capsys.readouterr().out
    q = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, q)
    with pytest.raises(CheckpointError, match="not a depth_defocus_ros checkpoint"):
        load_checkpoint(q)
