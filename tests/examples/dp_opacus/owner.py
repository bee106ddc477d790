# %%
# PySyft 0.5's examples/differential-privacy/opacus, the data owner's notebook, for duet.
# Changed: `import duet as sy`; torchvision's MNIST download hotfix is left out (the files are
# in this machine's data folder already).
import duet as sy

sy.load("opacus")

# %%
duet = sy.launch_duet(loopback=True)

# %%
print(duet.store.pandas)

# %% tags=["setup-done"]
# better handler code coming soon
duet.requests.add_handler(action="accept")
