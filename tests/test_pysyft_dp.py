"""PySyft 0.5's DP notebooks on duet (issue 19): ``duet.pydp`` maps PyDP's algorithms onto DP
statistics under the owner's budget; ``duet.opacus`` refuses the scientist-driven engine and
names the ``duet.privacy.train`` job its settings become."""

from __future__ import annotations

import pytest
import torch

import duet as sy
from duet.scientist.pydp import ReleasedFloat, ReleasedInt

SECS = 60
# PyDP's carrots: 200 animals, 1..100 carrots each (twice over): mean 50.5, sum 10100
CARROTS = list(range(1, 101)) * 2


@pytest.fixture
def carrots():
    """An owner publishing ``carrots_eaten`` as PySyft's notebook did (a python List) and the
    same values as a tensor, each under a budget, and one scientist."""
    owner = sy.OwnerSession()
    sy.lib.python.List(CARROTS).tag("carrots_eaten").send(owner, pointable=True)
    owner.publish(torch.tensor(CARROTS, dtype=torch.float32), tags=["carrots_tensor"])
    owner.privacy.set_budget("*", "carrots_eaten", epsilon=200.0, delta=1e-5)
    owner.privacy.set_budget("*", "carrots_tensor", epsilon=1.0, delta=1e-5)
    _, scientist = sy.duet_pair(owner=owner)
    yield owner, scientist
    scientist.close()
    owner.close()


def test_pydp_bounded_mean_is_a_dp_mean_charged_to_the_owners_budget(carrots):
    owner, duet = carrots
    sy.load("pydp")  # as PySyft's notebook does: nothing to load
    BoundedMean = duet.pydp.algorithms.laplacian.BoundedMean
    carrots_ptr = duet.store["carrots_eaten"]

    mean = BoundedMean(100.0, 1, 100).quick_result(carrots_ptr)
    assert isinstance(mean, ReleasedFloat) and mean == pytest.approx(50.5, abs=1.0)
    # PySyft's notebook asked for the pointer's value: the same number, no request made
    assert mean.get(request_block=True, reason="To get the private_mean", timeout_secs=10) == mean
    assert len(owner.requests) == 0
    left = duet.privacy.budget("carrots_eaten", timeout_secs=SECS)["remaining"]
    assert left == pytest.approx(100.0)


def test_pydp_sum_and_count_map_to_duet_privacy_with_pydps_dtypes(carrots):
    _, duet = carrots
    laplacian = duet.pydp.algorithms.laplacian
    carrots_ptr = duet.store["carrots_eaten"]

    total = laplacian.BoundedSum(50.0, 1, 100, dtype="float").quick_result(carrots_ptr)
    assert isinstance(total, float) and total == pytest.approx(10100, abs=50)
    as_int = laplacian.BoundedSum(epsilon=50.0, lower_bound=1, upper_bound=100).quick_result(
        carrots_ptr
    )  # PyDP's default dtype "int": an int
    assert isinstance(as_int, ReleasedInt) and abs(as_int - 10100) < 50
    count = laplacian.Count(50.0, dtype="int").quick_result(carrots_ptr)
    assert isinstance(count, int) and abs(count - 200) <= 2
    assert count.get(request_block=True, reason="count", timeout_secs=10) == count
    left = duet.privacy.budget("carrots_eaten", timeout_secs=SECS)["remaining"]
    assert left == pytest.approx(50.0)


def test_pydp_over_budget_is_refused_with_the_numbers_and_a_fitting_one_runs(carrots):
    _, duet = carrots
    BoundedMean = duet.pydp.algorithms.laplacian.BoundedMean
    tensor_ptr = duet.store["carrots_tensor"]  # a published tensor works as the list does
    BoundedMean(0.6, 1, 100).quick_result(tensor_ptr)
    with pytest.raises(sy.QuotaExceeded, match=r"needs epsilon 0\.6, 0\.4 left at delta 1e-05"):
        BoundedMean(0.6, 1, 100).quick_result(tensor_ptr)
    assert 0 <= BoundedMean(0.4, 1, 100).quick_result(tensor_ptr) <= 100
    assert duet.privacy.budget("carrots_tensor", timeout_secs=SECS)["remaining"] == pytest.approx(
        0.0, abs=1e-9
    )


def test_unsupported_pydp_names_are_refused_naming_what_is_supported(carrots):
    _, duet = carrots
    supported = (
        "pydp.algorithms.laplacian.BoundedMean, pydp.algorithms.laplacian.BoundedSum, "
        "pydp.algorithms.laplacian.Count"
    )
    for reach in (
        lambda: duet.pydp.algorithms.laplacian.Max,  # in PySyft's notebook
        lambda: duet.pydp.algorithms.laplacian.Median,
        lambda: duet.pydp.algorithms.geometric,
        lambda: duet.pydp.util,
    ):
        with pytest.raises(sy.UsageError, match=r"is not supported by duet\.pydp") as refused:
            reach()
        assert supported in str(refused.value)
    with pytest.raises(sy.UsageError, match=r"pydp\.algorithms\.laplacian\.Max is not supported"):
        duet.pydp.algorithms.laplacian.Max(1, 0, 100, dtype="int")
    assert sorted(dir(duet.pydp.algorithms.laplacian)) == ["BoundedMean", "BoundedSum", "Count"]
    # a notebook displays them: IPython's probes are plain AttributeErrors
    assert not hasattr(duet.pydp, "_repr_html_") and not hasattr(duet.opacus, "_repr_html_")
    assert "BoundedMean" in repr(duet.pydp) and "refused" in repr(duet.opacus)

    mean = duet.pydp.algorithms.laplacian.BoundedMean(1.0, 1, 100)
    with pytest.raises(sy.UsageError, match=r"BoundedMean\.add_entries is not supported"):
        mean.add_entries(duet.store["carrots_eaten"])
    with pytest.raises(sy.UsageError, match="privacy_budget_left is not supported"):
        mean.privacy_budget_left()
    assert not hasattr(mean, "_repr_html_")


def test_pydp_settings_duet_cannot_honour_are_refused_before_anything_is_sent(carrots):
    owner, duet = carrots
    laplacian = duet.pydp.algorithms.laplacian
    with pytest.raises(sy.UsageError, match="needs lower_bound and upper_bound"):
        laplacian.BoundedMean(1.0)
    with pytest.raises(sy.UsageError, match="l0_sensitivity is 1, not 3"):
        laplacian.BoundedSum(1.0, 0, 10, l0_sensitivity=3)
    with pytest.raises(sy.UsageError, match="give delta=0"):
        laplacian.BoundedMean(1.0, delta=1e-6, lower_bound=0, upper_bound=1)
    with pytest.raises(sy.UsageError, match="dtype is 'int' or 'float'"):
        laplacian.Count(1.0, dtype="str")
    with pytest.raises(sy.UsageError, match="takes a pointer to the owner's published dataset"):
        laplacian.BoundedMean(1.0, 0, 100).quick_result([1, 2, 3])
    assert duet.privacy.budget("carrots_eaten", timeout_secs=SECS)["spent"] == 0
    assert not owner.privacy.history()


def test_a_published_list_that_is_not_numbers_is_charged_and_told_nothing(carrots):
    owner, duet = carrots
    sy.lib.python.List(["a", "b"]).tag("words").send(owner, pointable=True)
    owner.privacy.set_budget("*", "words", epsilon=1.0, delta=1e-5)
    with pytest.raises(sy.RemoteError) as refused:  # it ran on the owner's data, and failed
        duet.privacy.count(duet.store["words"], epsilon=0.5, timeout_secs=SECS)
    assert refused.value.op == "duet.privacy.count"
    assert "'a'" not in str(refused.value) and "the owner's data is not shown" in str(refused.value)
    assert duet.privacy.budget("words", timeout_secs=SECS)["remaining"] == pytest.approx(0.5)


def test_opacus_engine_is_refused_naming_the_dp_job_its_settings_map_to(carrots):
    _, duet = carrots
    sy.load("opacus")
    model = torch.nn.Linear(4, 2).send(duet)
    remote_opacus = duet.opacus
    with pytest.raises(sy.UsageError) as refused:
        remote_opacus.privacy_engine.PrivacyEngine(
            model.real_module,
            batch_size=64,
            sample_size=60000,
            noise_multiplier=1.1,
            max_grad_norm=1.0,
        )
    text = str(refused.value)
    assert "duet.opacus.privacy_engine.PrivacyEngine is refused" in text
    assert "cannot carry a DP guarantee" in text
    assert (
        "PrivacyEngine(batch_size=64, sample_size=60000, noise_multiplier=1.1, max_grad_norm=1.0)"
        " -> duet.privacy.train(model, data=<the dataset's tag>, lr=<your optimizer's lr>, "
        "batch_size=64, noise_multiplier=1.1, max_grad_norm=1.0, epochs=...)"
    ) in text
    # Opacus 0.x's target_epsilon: the owner picks the noise
    with pytest.raises(sy.UsageError, match=r"batch_size=32, epsilon=2\.0, max_grad_norm=1\.0"):
        duet.opacus.privacy_engine.PrivacyEngine(
            model.real_module, batch_size=32, target_epsilon=2.0, max_grad_norm=1.0, epochs=3
        )
    # Opacus 1.x's spelling, and anything else under duet.opacus, refused the same way
    with pytest.raises(sy.UsageError, match=r"duet\.opacus\.PrivacyEngine is refused"):
        duet.opacus.PrivacyEngine()
    with pytest.raises(sy.UsageError, match=r"duet\.opacus\.validators is refused.*privacy\.train"):
        duet.opacus.validators  # noqa: B018


def test_sy_load_knows_only_what_duet_exposes():
    sy.load("pydp")
    sy.load("opacus")
    with pytest.raises(sy.UsageError, match="duet has no library 'tenseal' to load"):
        sy.load("tenseal")
