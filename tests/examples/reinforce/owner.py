# %%
import duet as sy

duet = sy.launch_duet(loopback=True)

# %% tags=["setup-done"]
# CartPole-v0 counts as solved at a running reward of 195; the scientist may read that number
reward_threshold = sy.lib.python.Float(195.0)
reward_threshold.send(duet, pointable=True, tags=["reward_threshold"])
duet.requests.add_handler(action="accept")
