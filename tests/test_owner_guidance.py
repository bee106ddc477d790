"""The owner is stopped early, with the fix named, when it sets something up that cannot work:
a handler whose tags name nothing published or whose limits are of the wrong type, data duet
cannot compute on."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import torch

import duet as sy
from duet.owner.handlers import HandlerWarning


def test_a_handler_whose_tags_name_nothing_published_warns_naming_them(pair):
    owner, _ = pair
    torch.arange(3.0).send(owner, tags=["ages"])
    with pytest.warns(HandlerWarning, match=r"tags \['agse'\] name nothing you have published") as caught:  # fmt: skip
        owner.requests.add_handler(tags=["agse", "mean"], action="accept")
    assert "'ages'" in str(caught[0].message)  # what was published, to compare with


def test_handlers_on_published_tags_and_op_names_alone_do_not_warn(pair):
    owner, _ = pair
    torch.arange(3.0).send(owner, tags=["ages"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        owner.requests.add_handler(tags=["ages", "mean"], action="accept")
        owner.requests.add_handler(tags=["__len__"], action="accept")
        owner.requests.add_handler(tags=["ages"], action="deny")
        owner.requests.add_handler(tags=["ages", "heights"], action="deny")  # ages is published
        owner.requests.add_handler(tags=["torch.cuda.is_available"], kind="bool")  # the owner's


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("max_elements", "10"),
        ("max_elements", 10.0),
        ("max_elements", True),
        ("max_elements", -1),
        ("element_quota", "100"),
        ("element_quota", 2.5),
        ("element_quota", False),
        ("element_quota", -5),
        ("timeout_secs", "60"),
        ("timeout_secs", True),
        ("timeout_secs", -2),
        ("timeout_secs", float("nan")),
        ("timeout_secs", None),
    ],
)
def test_a_wrong_type_or_sign_for_a_handler_limit_is_a_usage_error_naming_it(pair, argument, value):
    owner, _ = pair
    torch.arange(3.0).send(owner, tags=["ages"])
    with pytest.raises(sy.UsageError, match=argument):
        owner.requests.add_handler(tags=["ages"], action="accept", **{argument: value})
    assert len(owner.requests.handlers) == 0  # nothing was added


def test_handler_limits_of_the_right_type_are_kept(pair):
    owner, _ = pair
    torch.arange(3.0).send(owner, tags=["ages"])
    handler = owner.requests.add_handler(
        tags=["ages"], max_elements=np.int64(3), element_quota=0, timeout_secs=1.5
    )
    assert (handler.max_elements, handler.element_quota, handler.timeout_secs) == (3, 0, 1.5)
    assert owner.requests.add_handler(tags=["ages"], timeout_secs=-1).timeout_secs == -1


@pytest.mark.parametrize(
    ("value", "named", "fix"),
    [
        (np.arange(6.0).reshape(2, 3), r"a NumPy array \(shape \(2, 3\)", "torch.from_numpy"),
        (
            {"t": pd.DataFrame({"age": [34, 51], "label": [0, 1]})},
            r"a pandas DataFrame \(2 rows, 2 columns\) inside a container \(under key 't'",
            r"on its own .*duet.privacy.mean.*TensorDataset",
        ),
        (pd.Series([1.0, 2.0]), "a pandas Series", r"torch.tensor\(series.*series.to_frame\(\)"),
        ({"x": np.zeros(3)}, r"a NumPy array .* \(under key 'x' of a dict\)", "torch.from_numpy"),
        ("digits.csv", r"the file name 'digits.csv'", r"read the file .*duet serve"),
        ({"train": "data/train.NPY"}, r"the file name .* \(under key 'train'", "numpy.load"),
        (
            [torch.zeros(2), pd.DataFrame({"a": [1]})],
            r"a pandas DataFrame .* \(item 1 of a list\)",
            r"torch.tensor\(",
        ),
    ],
)
def test_publishing_what_duet_cannot_compute_on_is_refused_naming_the_fix(pair, value, named, fix):
    owner, scientist = pair
    with pytest.raises(sy.UsageError, match=f"duet cannot compute on {named}") as info:
        owner.publish(value, tags=["data"])
    assert __import__("re").search(fix, str(info.value))
    assert len(owner.store) == 0 and len(scientist.store) == 0


def test_sending_a_numpy_array_or_table_to_the_owner_session_is_refused_too(pair):
    owner, _ = pair
    with pytest.raises(sy.UsageError, match="NumPy array"):
        sy.lib.python.List([np.zeros(2)]).send(owner, tags=["x"])
    with pytest.raises(sy.UsageError, match=r"DataFrame .* inside a container"):
        sy.lib.python.List([pd.DataFrame({"a": [1.0]})]).send(owner, tags=["x"])


@pytest.mark.parametrize(
    ("frame", "refused"),
    [
        (pd.DataFrame({"year": [2018], "sex": ["F"]}), r"column 'sex' holds .* numbers only"),
        (pd.DataFrame({"w": [1.0, float("nan")]}), r"column 'w' holds missing .*dropna"),
        (pd.DataFrame({"w": [True]}), r"column 'w' holds bool"),
        (pd.DataFrame({"w": []}, dtype=float), r"needs rows .* 0 rows"),
        (pd.DataFrame({3: [1.0]}), r"a column name is a string"),
        (pd.DataFrame({"a\nb": [1.0]}), r"printable characters"),
    ],
)
def test_a_dataframe_that_cannot_be_a_table_is_refused_naming_the_column(pair, frame, refused):
    owner, scientist = pair
    with pytest.raises(sy.UsageError, match=refused):
        owner.publish(frame, tags=["births"])
    assert len(owner.store) == 0 and len(scientist.store) == 0


def test_a_dataframe_published_on_its_own_is_a_table_listed_without_its_values(pair):
    owner, scientist = pair
    births = pd.DataFrame({"year": [2018, 2019, 2019], "weight_g": [3100.5, 2900.0, 3400.25]})
    owner.publish(births, tags=["births"], description="births by year")
    births.loc[0, "weight_g"] = 1.0  # the owner's frame changes; what was published does not
    listed = scientist.store.pandas
    assert listed["Type"].tolist() == ["table: year (int64), weight_g (float64)"]
    assert listed["Shape"].tolist() == [[3, 2]]
    table = scientist.store["births"]
    assert table.columns == {"year": "int64", "weight_g": "float64"}
    assert "3100.5" not in repr(table) and "2900" not in repr(listed.to_dict())


def test_what_publish_took_before_still_works(pair):
    owner, scientist = pair
    owner.publish(torch.arange(3.0), tags=["t"])
    owner.publish("hello", tags=["s"])  # a remote String: .upper(), len()
    owner.publish([1.0, 2.0], tags=["l"])
    owner.publish({"a": torch.ones(2)}, tags=["d"])
    owner.publish(torch.utils.data.TensorDataset(torch.zeros(4, 2), torch.zeros(4)), tags=["ds"])
    sy.lib.python.Float(1.5).send(owner, tags=["f"])
    torch.nn.Linear(2, 1).send(owner, tags=["model"])
    owner.requests.add_handler(tags=["t", "s", "l", "d", "ds", "f"], action="accept")

    def get(ptr):
        return ptr.get(request_block=True, name="check", timeout_secs=10)

    assert get(scientist.store["t"].sum()) == 3.0
    assert get(scientist.store["s"].upper()) == "HELLO"
    assert get(scientist.store["l"].__len__()) == 2
    assert get(scientist.store["ds"].__len__()) == 4
    assert len(owner.store) == 7
