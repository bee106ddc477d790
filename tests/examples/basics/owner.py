# %%
import time

import torch as th

import duet as sy


def wait_for_requests(count, timeout_secs=30):
    """Wait until `count` requests are waiting for a decision (as a person watching would)."""
    deadline = time.monotonic() + timeout_secs
    while len(duet.requests) < count:
        assert time.monotonic() < deadline, "no request arrived"
        time.sleep(0.1)


# %%
duet = sy.launch_duet(loopback=True)

# %% tags=["published"]
# Part 2: the ages of six members of a running club, tagged and described, then sent:
# the data stays here, the scientist only gets pointers to it.
age_data = th.tensor([31, 45, 27, 62, 50, 39])
age_data = age_data.tag("ages")
age_data = age_data.describe("Ages of the six members of a running club.")
age_data_pointer = age_data.send(duet, searchable=True)
print(duet.store.pandas)

# %% tags=["after:first-request", "denied"]
# Part 3: a request has come in; it does not say much, so it is denied.
wait_for_requests(1)
print(duet.requests.pandas)
print("the scientist says:", duet.requests[0].request_description)
duet.requests[0].deny()
print("requests waiting:", len(duet.requests))

# %% tags=["after:second-request", "accepted"]
# A second request, with a reason this time.
wait_for_requests(1)
assert duet.requests[0].request_description == "I need the mean age of the club for my report."
duet.requests[0].accept()

# %% tags=["auto-accept"]
# From now on, accept whatever is asked (handy while testing).
duet.requests.add_handler(action="accept")
print(duet.requests.handlers)
