"""What every wire message is made of: the base model (no field it does not declare) and the
field types several families of messages share. It imports nothing of duet.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

ObjectId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
ShortText = Annotated[str, Field(max_length=2000)]
RequestId = Annotated[int, Field(ge=0, lt=2**63)]
#: which side of a duet: the owner serves its data, the scientist drives it through pointers
Role = Literal["owner", "scientist"]
#: how long a request may wait for the owner's decision
WaitSecs = Annotated[float, Field(ge=0, le=10_000_000, allow_inf_nan=False)]
#: an owner node's identity ID (``duet.identity``)
OwnerIdentity = Annotated[
    str, Field(strict=True, min_length=1, max_length=40, pattern=r"^[0-9a-f-]+$")
]
Hex32 = Annotated[str, Field(strict=True, min_length=64, max_length=64, pattern=r"^[0-9a-f]+$")]
Hex64 = Annotated[str, Field(strict=True, min_length=128, max_length=128, pattern=r"^[0-9a-f]+$")]


class WireMessage(BaseModel):
    """The base of every message: a field it does not declare is an error."""

    model_config = ConfigDict(extra="forbid")
