# %%
import duet as sy

# %%
duet = sy.launch_duet(loopback=True)

# %% tags=["setup-done"]
# The scientist will open MNIST from this machine's data folder and train on it. Decide what
# leaves: the training losses do not (shown here instead), the rest does.
duet.requests.add_handler(name="loss", action="deny", timeout_secs=-1, print_local=True)
duet.requests.add_handler(name="train_size", action="accept")
duet.requests.add_handler(name="cuda_is_available", action="accept")
duet.requests.add_handler(name="model_download", action="accept")
print(duet.requests.handlers.pandas)

# %% tags=["after:evaluated"]
print(duet.requests.pandas.groupby(["Name", "Status"]).size().to_string())
