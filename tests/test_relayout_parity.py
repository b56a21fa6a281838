"""Behaviour unchanged, bit for bit: the tiny detector and localizer of tests/golden/ against the files
tests/golden/make_golden.py wrote from a reference commit (losses, trained weights, test outputs, a
checkpoint trained before, the Predictor's outputs), re-run the same way (tests/golden/procedure.py)
through the public API only: configs, ``build_model``, the model's forward on a list of dicts,
``load_weights`` and ``Predictor``."""
from __future__ import annotations

import os

import pytest
import torch

from detection.checkpoint import load_weights
from detection.checkpoint.converters import rename_legacy
from detection.modeling import build_model
from golden import procedure as golden

# Bit-identity holds on the kind of machine and torch build the golden files were made with; on
# another one (other CPU kernels round differently) the comparison would fail for no fault of the
# code, so it is skipped there, saying how to regenerate the files.
with open(os.path.join(golden.GOLDEN, "numerics.txt"), encoding="utf-8") as _f:
    GOLDEN_NUMERICS = _f.read().strip()
if golden.numerics_fingerprint() != GOLDEN_NUMERICS:
    pytest.skip("the golden files were made on a machine or torch build whose kernels round differently "
                f"(numerics fingerprint {GOLDEN_NUMERICS}, here {golden.numerics_fingerprint()}): regenerate "
                "them with tests/golden/make_golden.py from the reference commit on this machine",
                allow_module_level=True)


def load(name: str, what: str):
    return torch.load(golden.path(name, what), map_location="cpu", weights_only=True)


def assert_identical(actual, expected, where: str) -> None:
    """Same structure, same keys, and every tensor equal in dtype, shape and every bit."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and sorted(actual) == sorted(expected), \
            f"{where}: keys {sorted(actual) if isinstance(actual, dict) else type(actual)} != {sorted(expected)}"
        for k in expected:
            assert_identical(actual[k], expected[k], f"{where}[{k!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), f"{where}: {len(actual)} items != {len(expected)}"
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_identical(a, e, f"{where}[{i}]")
    elif isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor), f"{where}: {type(actual)} is not a tensor"
        assert (actual.dtype, actual.shape) == (expected.dtype, expected.shape), \
            f"{where}: {actual.dtype} {tuple(actual.shape)} != {expected.dtype} {tuple(expected.shape)}"
        if not torch.equal(actual, expected):
            diff = (actual.double() - expected.double()).abs().max().item() if actual.numel() else 0.0
            raise AssertionError(f"{where}: values differ (max abs difference {diff:.3g})")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def assert_complete(report, name: str) -> None:
    assert report.complete and not report.dropped, (
        f"{name}: missing {report.missing}, unexpected {report.unexpected}, "
        f"shape mismatch {report.shape_mismatch}, dropped {report.dropped}")
    assert len(report.loaded) == report.num_model_tensors


def assert_weights_equal(model, file_state: dict, renamed: dict[str, str], name: str) -> None:
    """Every model tensor equal to the file's tensor of the name the loader matched it to (the
    file's names as of today: our own renamed tensors under their new names)."""
    file_state, _ = rename_legacy(file_state)
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert_identical(state, {k: file_state[renamed.get(k, k)] for k in state}, f"{name} weights")


@pytest.mark.parametrize("name", golden.MODELS)
def test_training_from_the_stored_init_gives_the_stored_losses_and_weights(name, single_thread):
    expected = load(name, "golden.pt")
    _, model, report = golden.build(name)
    losses, _ = golden.train(model, expected["train_batches"])
    assert_identical(losses, expected["losses"], f"{name} losses")
    assert_weights_equal(model, load(name, "model_final.pth")["model"], report.renamed, f"{name} trained")


@pytest.mark.parametrize("name", golden.MODELS)
def test_checkpoint_trained_before_loads_with_nothing_missing_or_unexpected(name):
    torch.manual_seed(golden.INIT_SEED + 1)  # not the init the weights were trained from
    model = build_model(golden.config(name))
    report = load_weights(model, golden.path(name, "model_final.pth"))
    assert_complete(report, name)
    assert report.info.source == "ours"
    checkpoint = load(name, "model_final.pth")
    assert report.info.metadata["class_names"] == checkpoint["class_names"]
    assert_weights_equal(model, checkpoint["model"], report.renamed, name)


@pytest.mark.parametrize("name", golden.MODELS)
def test_test_outputs_are_bit_identical_batched_and_one_at_a_time(name, single_thread):
    expected = load(name, "golden.pt")
    model = build_model(golden.config(name))
    assert_complete(load_weights(model, golden.path(name, "model_final.pth")), name)
    assert sorted(expected["test_inputs"]) == (["whole"] if name == "detector" else ["dense", "multiscale", "one_crop"])
    for kind, inputs in expected["test_inputs"].items():
        assert_identical(golden.eval_outputs(model, inputs), expected["test_outputs"][kind], f"{name} {kind}")


@pytest.mark.parametrize("name", golden.MODELS)
def test_predictor_on_a_checkpoint_trained_before_gives_the_stored_outputs(name, single_thread):
    expected = load(name, "golden.pt")
    out = golden.predictor_outputs(golden.config(name), golden.path(name, "model_final.pth"),
                                   expected["predictor_images"])
    assert_identical(out, expected["predictor_outputs"], f"{name} Predictor")
