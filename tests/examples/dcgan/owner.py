# %%
import duet as sy

duet = sy.launch_duet(loopback=True)
sy.logger.add(sink="./syft_do.log")

# %% tags=["setup-done"]
# accept every request: this owner trusts this scientist with MNIST
duet.requests.add_handler(action="accept")
