"""Secret-shared computation over duets (issue 20), in this process: the party core alone
(``duet.smpc.remote.party``), then three owners joined in memory (real frames) with the
scientist relaying. The hostile relay: forged, replayed and misaddressed party messages,
swapped keys, rosters that differ between parties, the rule missing, oversized tensors; each
refused with a clear error and nothing revealed. Over real processes:
test_smpc_duets_processes.py.
"""

from __future__ import annotations

import concurrent.futures
import json
import secrets

import pydantic
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import duet as sy
from duet.errors import NotAllowed, ProtocolError, QuotaExceeded, UsageError
from duet.protocol.messages import Message, Reply
from duet.protocol.smpc_messages import (
    SealedWire,
    SmpcAccept,
    SmpcAgree,
    SmpcDeal,
    SmpcDrop,
    SmpcKeys,
    SmpcLocal,
    SmpcMask,
    SmpcMultiply,
    SmpcReveal,
    SmpcShare,
)
from duet.smpc import ring
from duet.smpc.remote import SecureComputation
from duet.smpc.remote.party import Party, Roster

TIMEOUT = 10.0


# ---- the party core, no I/O
def parties(bits: int = 16) -> tuple[Party, Party, Party]:
    ids = [sy.Identity.ephemeral(n) for n in ("model", "data", "provider")]
    roster = Roster("ab" * 16, (ids[0].id, ids[1].id), ids[2].id, bits)
    made = tuple(Party(i, roster) for i in ids)
    keys = [p.advertise() for p in made]
    for p in made:
        p.agree(keys)
    return made  # type: ignore[return-value]


def shared(holders: tuple[Party, Party], name: str, value: torch.Tensor, owner: int = 0) -> None:
    a, b = holders[owner], holders[1 - owner]
    shape, sealed = a.split(name, ring.encode(value, a.roster.fractional_bits), name)
    b.accept(name, shape, sealed, name)


def product(m: Party, d: Party, p: Party, op: str, x: str, y: str, out: str, triple: str) -> None:
    shapes = [list(m.get(x).share.shape), list(m.get(y).share.shape)]
    dealt = p.deal(triple, op, *shapes)
    opened = [h.mask(triple, op, x, y, s) for h, s in zip((m, d), dealt, strict=True)]
    m.multiply(triple, out, opened[1])
    d.multiply(triple, out, opened[0])


def value_of(m: Party, d: Party, name: str) -> torch.Tensor:
    total = m.get(name).share + d.get(name).share
    return ring.decode(total, m.roster.fractional_bits, torch.float64)


def test_party_core_computes_products_and_public_operations_within_fixed_point():
    m, d, p = parties()
    torch.manual_seed(1)
    x, w = torch.rand(5, 8) - 0.5, torch.randn(3, 8)
    shared((m, d), "x", x, owner=1)
    shared((m, d), "w", w)
    for h in (m, d):
        h.local("t", ["w"], "wt", None, None)
    product(m, d, p, "matmul", "x", "wt", "y", "b1")
    product(m, d, p, "mul", "y", "y", "y2", "b2")
    for h in (m, d):
        h.local("mul_public", ["y2"], "half", 0.5, None)
        h.local("add_public", ["half"], "shifted", -1.25, None)
        h.local("sum", ["shifted"], "total", None, 1)
    expected = ((x @ w.t()) ** 2 * 0.5 - 1.25).sum(1).double()
    assert (value_of(m, d, "total") - expected).abs().max() < 1e-3
    # what a holder keeps of an input is uniform: each of its 64 bits is set about half the time
    bits = (m.get("x").share.reshape(-1, 1) >> torch.arange(64)) & 1
    assert bits.numel() == 40 * 64
    m2, d2, _ = parties()
    shared((m2, d2), "big", torch.zeros(20_000))  # the secret is 0: shares alone are noise
    ones = ((m2.get("big").share.reshape(-1, 1) >> torch.arange(64)) & 1).double().mean(0)
    assert float((ones - 0.5).abs().max()) < 0.02  # 5 sigma at 20,000 draws is 0.018


def test_party_core_refuses_forged_replayed_and_misaddressed_values():
    m, d, p = parties()
    shared((m, d), "x", torch.ones(4))
    shape, sealed = m.split("y", ring.encode(torch.ones(4), 16), "y")
    with pytest.raises(ProtocolError, match="does not open"):  # replayed into another slot
        d.accept("z", shape, sealed, "z")
    forged = type(sealed)(sealed.sender, sealed.receiver, sealed.nonce,
                          bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:])  # fmt: skip
    with pytest.raises(ProtocolError, match="does not open"):
        d.accept("y", shape, forged, "y")
    dealt = p.deal("t1", "mul", [4], [4])
    with pytest.raises(ProtocolError, match="addressed from"):  # holder 0's dealing to holder 1
        d.mask("t1", "mul", "x", "x", dealt[0])
    with pytest.raises(NotAllowed, match="only the computation's crypto provider"):
        m.deal("t2", "mul", [4], [4])
    with pytest.raises(NotAllowed, match="holds no shares"):
        p.local("neg", ["x"], "n", None, None)
    with pytest.raises(UsageError, match="larger than"):
        p.deal("t3", "mul", [1 << 13, 1 << 12], [1 << 13, 1 << 12])
    with pytest.raises(NotAllowed, match="not a computed result"):
        m.releasable("x")
    with pytest.raises(UsageError, match="used before"):
        m.local("neg", ["x"], "x", None, None)
    shared((m, d), "other", torch.ones(3))
    with pytest.raises(UsageError, match="add of x, other"):  # shapes that do not broadcast
        m.local("add", ["x", "other"], "sum", None, None)
    with pytest.raises(UsageError):
        m.local("mul_public", ["x"], "huge", 2**70, None)


def test_keys_relayed_wrong_are_refused():
    ids = [sy.Identity.ephemeral(n) for n in ("model", "data", "provider")]
    roster = Roster("cd" * 16, (ids[0].id, ids[1].id), ids[2].id, 16)
    made = [Party(i, roster) for i in ids]
    keys = [p.advertise() for p in made]
    swapped = [dict(keys[0], cipher_key=keys[1]["cipher_key"]), *keys[1:]]
    with pytest.raises(ProtocolError, match="not signed over the computation"):
        made[1].agree(swapped)
    # a data owner told the holders in the other order signs another transcript
    other = Party(ids[1], Roster("cd" * 16, (ids[1].id, ids[0].id), ids[2].id, 16))
    with pytest.raises(ProtocolError, match="not signed over the computation"):
        made[0].agree([keys[0], other.advertise(), keys[2]])
    with pytest.raises(ProtocolError, match="keys missing"):
        made[0].agree(keys[:2])
    with pytest.raises(NotAllowed, match="also named as a share holder"):
        Party(ids[0], Roster("ef" * 16, (ids[0].id, ids[2].id), ids[2].id, 16))


# ---- three owners in this process, the scientist relaying
@pytest.fixture
def trio():
    pairs = [sy.duet_pair() for _ in range(3)]
    (mo, _), (do, _), _ = pairs
    ids = [o.identity.id for o, _ in pairs]
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 3)
    x = torch.rand(6, 8)
    mo.publish(model, tags=["model"], description="a linear model")
    do.publish(x, tags=["inputs"], description="inputs")
    do.publish(torch.arange(6), tags=["labels"], description="not under the rule")
    yield pairs, ids, model, x
    for owner, scientist in pairs:
        scientist.close()
        owner.close()


def allow(pairs, ids) -> None:
    (mo, _), (do, _), (po, _) = pairs
    mo.allow_secure_computation("model", parties=ids, provider=ids[2])
    do.allow_secure_computation("inputs", parties=ids, provider=ids[2])
    po.allow_secure_computation(None, parties=ids, provider=ids[2])


def test_without_the_rule_every_message_is_refused(trio):
    pairs, ids, _, _ = trio
    (_, ms), (_, ds), (_, ps) = pairs
    with pytest.raises(NotAllowed, match="allows no secure computation"):
        SecureComputation(ms, ds, crypto_provider=ps, timeout_secs=TIMEOUT)
    reply, _ = ms.client.request_async(lambda rid: SmpcMask(
        rid=rid, computation="12" * 16, triple="t", op="mul", x="a", y="b",
        dealing=SealedWire(sender=ids[2], receiver=ids[0], nonce="00" * 12, ciphertext="00" * 32),
    )).result(TIMEOUT)  # fmt: skip
    assert reply.status == "error" and "no computation" in reply.error.message


def test_linear_inference_reveals_through_requests_and_the_denied_get_returns_none(trio):
    pairs, ids, model, x = trio
    (mo, ms), (do, ds), (_, ps) = pairs
    allow(pairs, ids)
    mo.requests.add_handler(name="logits", tags=["model"], action="accept")
    do.requests.add_handler(name="logits", tags=["inputs"], action="accept")
    with SecureComputation(ms, ds, crypto_provider=ps, timeout_secs=TIMEOUT) as comp:
        xs = comp.share(ds.store["inputs"])
        w = comp.share(ms.store["model"], part="weight")
        b = comp.share(ms.store["model"], part="bias")
        logits = xs @ w.t() + b
        with torch.no_grad():
            expected = model(x)
        got = logits.get(name="logits", timeout_secs=TIMEOUT)
        assert got is not None and (got.float_precision() - expected).abs().max() < 1e-3
        names = [r.name for r in mo.requests.history]
        assert "logits" in names  # the reveal was a request in each holder's queue
        # the data owner denies the next one by hand: nothing reaches the scientist
        do.requests.add_handler(name="again", tags=["inputs"], action="deny")
        mo.requests.add_handler(name="again", tags=["model"], action="accept")
        assert (xs @ w.t()).get(name="again", timeout_secs=TIMEOUT) is None
        # MLaaS: to the data owner only
        assert (xs @ w.t() - 1.0).reveal_to(ds, name="logits", timeout_secs=TIMEOUT)
        mlaas = do.secure_computation.results["logits"]
        assert (mlaas - (x @ model.weight.t() - 1.0).detach()).abs().max() < 1e-3
        # to the provider, or a dataset not under the rule: refused
        bad = xs @ w.t()
        with pytest.raises(NotAllowed, match="scientist or to the other share holder"):
            _reveal(ms, comp, bad.name, ids[2])
        with pytest.raises(NotAllowed, match="only the dataset 'inputs'"):
            comp.share(ds.store["labels"])
        with pytest.raises(UsageError, match="not on a share holder"):
            comp.share(ps.send_value(torch.ones(2)))


def _reveal(session, comp, tensor, to):  # type: ignore[no-untyped-def]
    reply, _ = session.client.request_async(lambda rid: SmpcReveal(
        rid=rid, computation=comp.id, tensor=tensor, to=to, name="logits")).result(TIMEOUT)  # fmt: skip
    session.client.raise_for(reply)


def test_the_provider_deals_only_for_its_rule_and_holders_keep_distinct_roles(trio):
    pairs, ids, _, _ = trio
    (_, ms), (_, ds), (_, ps) = pairs
    allow(pairs, ids)
    comp = SecureComputation(ms, ds, crypto_provider=ps, timeout_secs=TIMEOUT)
    # the provider is asked to share data, a holder to deal: refused
    with pytest.raises(UsageError, match="not on a share holder"):
        comp.share(ps.send_value(torch.ones(2)))
    reply, _ = ms.client.request_async(lambda rid: SmpcDeal(
        rid=rid, computation=comp.id, triple="t9", op="mul", x_shape=[2], y_shape=[2],
    )).result(TIMEOUT)  # fmt: skip
    assert (
        reply.status == "error" and "only the computation's crypto provider" in reply.error.message
    )
    # a second computation reusing the id
    reply, _ = ps.client.request_async(lambda rid: SmpcKeys(
        rid=rid, computation=comp.id, holders=list(ids[:2]), provider=ids[2], fractional_bits=16,
    )).result(TIMEOUT)  # fmt: skip
    assert reply.status == "error" and "was used before" in reply.error.message
    # the scientist's own values and shapes too large for a party are refused before any work
    reply, _ = ps.client.request_async(lambda rid: SmpcDeal(
        rid=rid, computation=comp.id, triple="t10", op="matmul", x_shape=[1 << 15, 1 << 15],
        y_shape=[1 << 15, 2],
    )).result(TIMEOUT)  # fmt: skip
    assert reply.status == "error" and "larger than" in reply.error.message
    # and the owner keeps serving
    x = comp.share(ds.store["inputs"])
    assert x.shape == [6, 8]


def test_shares_count_against_the_scientists_quota(trio):
    pairs, ids, _, _ = trio
    (mo, ms), (do, ds), (_, ps) = pairs
    allow(pairs, ids)
    big = do.publish(torch.zeros(100_000), tags=["inputs"], description="large inputs")
    comp = SecureComputation(ms, ds, crypto_provider=ps, timeout_secs=TIMEOUT)
    (scientist,) = do.links  # the one scientist, as the owner knows it
    quota = do.objects.quota(scientist)
    before = quota.private_bytes
    x = comp.share(ds.store[big.id])
    assert quota.private_bytes == before + 800_000  # its share, 8 bytes an element
    comp.close()
    assert quota.private_bytes == before
    (seen_by_model,) = mo.links  # each in-memory pair has a scientist identity of its own
    model_quota = mo.objects.quota(seen_by_model)
    model_quota.max_bytes = model_quota.used(True) + 500_000
    comp = SecureComputation(ms, ds, crypto_provider=ps, timeout_secs=TIMEOUT)
    with pytest.raises(QuotaExceeded, match="shares of this secure computation"):
        comp.share(ds.store[big.id])  # the model owner would keep the other share
    assert x.shape == [100_000]


HEX = "0123456789abcdef"
NAMES = st.sampled_from(["t1", "t2", "t3", "b4", "zz", "t1.x"])
SEALED = st.fixed_dictionaries({
    "sender": st.sampled_from(["sender"]), "receiver": st.sampled_from(["receiver"]),
    "nonce": st.text(alphabet=HEX, min_size=24, max_size=24),
    "ciphertext": st.text(alphabet=HEX, min_size=32, max_size=80),
})  # fmt: skip
FIELDS = st.fixed_dictionaries({
    "holders": st.just("holders"), "provider": st.just("provider"),
    "fractional_bits": st.integers(-2, 40), "keys": st.lists(st.dictionaries(
        st.sampled_from(["owner", "role", "identity_key", "cipher_key", "signature"]),
        st.text(alphabet=HEX, max_size=130)), max_size=3),
    "source": NAMES,
    "rows": st.lists(st.integers(-1, 9), min_size=2, max_size=2), "result": NAMES,
    "shape": st.lists(st.integers(0, 9), max_size=3), "sealed": SEALED, "dealing": SEALED,
    "opening": SEALED, "op": st.sampled_from(["add", "sub", "neg", "add_public", "mul_public",
                                              "t", "sum", "mul", "matmul", "exec"]),
    "inputs": st.lists(NAMES, min_size=1, max_size=2), "scalar": st.floats(-10, 10) | st.integers(),
    "dim": st.integers(-3, 3), "triple": NAMES, "x_shape": st.lists(st.integers(0, 9), max_size=3),
    "y_shape": st.lists(st.integers(0, 9), max_size=3), "x": NAMES, "y": NAMES, "tensor": NAMES,
    "to": st.sampled_from(["scientist", "data", "model", "provider"]),
    "tensors": st.lists(NAMES, max_size=2),
}, optional={"part": st.sampled_from(["weight", "bias", "nope"])})  # fmt: skip
MODELS = {m.model_fields["k"].default: m for m in (
    SmpcKeys, SmpcAgree, SmpcShare, SmpcAccept, SmpcLocal, SmpcDeal, SmpcMask, SmpcMultiply,
    SmpcReveal, SmpcDrop)}  # fmt: skip
KINDS = ["smpc_keys", "smpc_agree", "smpc_share", "smpc_accept", "smpc_local", "smpc_deal",
         "smpc_mask", "smpc_multiply", "smpc_reveal", "smpc_drop"]  # fmt: skip


def test_any_secure_computation_message_gets_a_clear_answer_and_the_owner_keeps_serving(trio):
    pairs, ids, _, _ = trio
    (_, ms), (_, ds), (_, ps) = pairs
    allow(pairs, ids)
    comp = SecureComputation(ms, ds, crypto_provider=ps, timeout_secs=TIMEOUT)
    x = comp.share(ds.store["inputs"])
    w = comp.share(ms.store["model"], part="weight")
    _ = x @ w.t()
    by_name = {"holders": ids[:2], "provider": ids[2], "sender": ids[0], "receiver": ids[1],
               "data": ids[1], "model": ids[0]}  # fmt: skip
    adapter = pydantic.TypeAdapter(Message)
    answers: list[str] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(kind=st.sampled_from(KINDS), fields=FIELDS, fresh=st.booleans())
    def one(kind: str, fields: dict, fresh: bool) -> None:
        resolved = json.loads(json.dumps(fields), object_hook=lambda d: {
            k: by_name.get(v, v) if isinstance(v, str) else v for k, v in d.items()})  # fmt: skip
        resolved = {k: by_name.get(v, v) if isinstance(v, str) else v for k, v in resolved.items()}
        computation = secrets.token_hex(16) if fresh and kind == "smpc_keys" else comp.id
        allowed = MODELS[kind].model_fields
        body = {"k": kind, "computation": computation,
                **{k: v for k, v in resolved.items() if k in allowed}}  # fmt: skip
        if kind == "smpc_drop" and not body.get("tensors"):
            return  # ending the computation would leave nothing for the rest to reach
        if kind == "smpc_reveal":
            body["timeout_secs"] = 0  # no handler decides it: it times out at once
        try:
            adapter.validate_python({**body, "rid": 1})
        except pydantic.ValidationError:
            return  # the wire refuses it before any owner sees it (test_protocol)
        reply, _ = ds.client.request_async(
            lambda rid: adapter.validate_python({**body, "rid": rid})
        ).result(TIMEOUT)
        assert isinstance(reply, Reply) and reply.status in ("ok", "error", "timeout")
        if reply.status == "error":  # a DuetError's clear message, never an unexpected one
            assert reply.error is not None and reply.error.code != "remote_error", reply.error
            answers.append(reply.error.message)

    one()
    assert len(set(answers)) > 5 and all(answers)  # they reach a party, which refuses them
    # the owner still serves this scientist (the fuzzing may have dropped the computation)
    again = SecureComputation(ms, ds, crypto_provider=ps, timeout_secs=TIMEOUT)
    assert again.share(ds.store["inputs"]).shape == [6, 8]


def test_a_reveal_the_owners_accept_by_hand_reaches_the_scientist(trio):
    pairs, ids, model, x = trio
    (mo, ms), (do, ds), (_, ps) = pairs
    allow(pairs, ids)
    comp = SecureComputation(ms, ds, crypto_provider=ps, timeout_secs=TIMEOUT)
    xs = comp.share(ds.store["inputs"])
    w = comp.share(ms.store["model"], part="weight")
    product = (xs @ w.t()).sum()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        got = pool.submit(product.get, name="checksum", reason="by hand", timeout_secs=TIMEOUT)
        for owner in (mo, do):
            request = owner.requests.wait_for_request(TIMEOUT)
            assert request is not None and request.name == "checksum"
            assert "secure computation revealed to the scientist" in request.op
            assert "inputs" in request.tags or "model" in request.tags
            request.accept()
        value = got.result(TIMEOUT)
    assert value is not None
    expected = float((x @ model.weight.detach().t()).sum())
    assert float(value.float_precision()) == pytest.approx(expected, abs=1e-2)
