# %% tags=["after:owner-waiting"]
from collections import namedtuple
from itertools import count

import numpy as np
import torch

import duet as sy

duet = sy.join_duet(loopback=True)

# %% tags=["after:setup-done"]
config = {"gamma": 0.99, "seed": 543, "render": False, "log_interval": 10, "no_cuda": True}
config["dry_run"] = True
remote_torch = duet.torch
remote_torch.manual_seed(config["seed"])
has_cuda = False
has_cuda_ptr = remote_torch.cuda.is_available()
has_cuda = bool(
    has_cuda_ptr.get(request_block=True, reason="To run test and inference locally", timeout_secs=3)
)
print("Is cuda available ? : ", has_cuda)
use_cuda = not config["no_cuda"] and has_cuda
device = remote_torch.device("cuda" if use_cuda else "cpu")

# %%
SavedAction = namedtuple("SavedAction", ["log_prob", "value"])
buffer_saved_actions = []
buffer_rewards = []


class Policy(sy.Module):
    """The actor and the critic in one model."""

    def __init__(self, torch_ref):
        super().__init__(torch_ref=torch_ref)
        self.affine1 = self.torch_ref.nn.Linear(4, 128)
        self.action_head = self.torch_ref.nn.Linear(128, 2)  # the actor
        self.value_head = self.torch_ref.nn.Linear(128, 1)  # the critic

    def forward(self, x):
        x = remote_torch.relu(self.affine1(x))
        action_prob = remote_torch.softmax(self.action_head(x), dim=-1)
        state_values = self.value_head(x)
        return action_prob, state_values


policy = Policy(torch)
remote_policy = policy.send(duet)
optimizer = remote_torch.optim.Adam(remote_policy.parameters(), lr=3e-2)
eps = np.finfo(np.float32).eps.item()
if has_cuda:
    remote_policy.cuda(device)
else:
    remote_policy.cpu()


# %%
def select_action(state):
    # the state stays on the owner's machine: we never see it
    state = remote_torch.from_numpy(state).float()
    probs_ptr, state_value_ptr = remote_policy(state)
    m = remote_torch.distributions.Categorical(probs_ptr)
    action = m.sample()
    buffer_saved_actions.append(SavedAction(m.log_prob(action), state_value_ptr))
    return action.item()


def finish_episode():
    gamma = duet.python.Float(config["gamma"])
    R = duet.python.Float(0)
    policy_losses = duet.python.List([])
    value_losses = duet.python.List([])
    returns = duet.python.List([])
    for r in buffer_rewards[::-1]:
        R = r + gamma * R
        returns.insert(0, R)
    returns = remote_torch.Tensor(returns)
    returns = (returns - returns.mean()) / (returns.std() + eps)
    for (log_prob, value), R in zip(buffer_saved_actions, returns, strict=False):
        advantage = R - value.item()
        policy_losses.append(-log_prob * advantage)
        value_losses.append(remote_torch.nn.functional.smooth_l1_loss(value, R.reshape(1)))
    optimizer.zero_grad()
    loss = remote_torch.stack(policy_losses).sum() + remote_torch.stack(value_losses).sum()
    loss.backward()
    optimizer.step()
    del buffer_saved_actions[:]
    del buffer_rewards[:]


# %%
reward_threshold_ptr = duet.store["reward_threshold"]
reward_threshold = reward_threshold_ptr.get(request_block=True, delete_obj=False)
print(f"reward_threshold is {reward_threshold}")

# %% tags=["raises-exception"]
remote_gym = duet.gym
remote_env = remote_gym.make("CartPole-v0")
remote_env.seed(config["seed"])

# %%
running_reward = 10
for i_episode in count(1):
    state = remote_env.reset()
    ep_reward = duet.python.Float(0)
    for t in range(1, 10000):
        steps = t
        action = select_action(state)
        state, reward, done, _ = remote_env.step(action)
        buffer_rewards.append(reward)
        ep_reward += reward
        if done.get(request_block=True):
            break
    running_reward = (
        0.05 * ep_reward.get(request_block=True, delete_obj=False) + 0.95 * running_reward
    )
    finish_episode()
    if i_episode % config["log_interval"] == 0:
        last = ep_reward.get(request_block=True, delete_obj=False)
        print(f"Episode {i_episode}\tLast reward: {last:.2f}\tAverage reward: {running_reward:.2f}")
    if running_reward > reward_threshold:
        print(f"Solved! Running reward is now {running_reward} after {steps} time steps")
        break
    if config["dry_run"]:
        break
