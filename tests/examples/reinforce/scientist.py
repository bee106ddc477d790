# %% tags=["after:owner-waiting"]
from itertools import count

import numpy as np
import torch

import duet as sy

duet = sy.join_duet(loopback=True)

# %% tags=["after:setup-done"]
config = {"gamma": 0.99, "seed": 543, "render": False, "log_interval": 10, "dry_run": True}
remote_torch = duet.torch
remote_torch.manual_seed(config["seed"])
buffer_saved_log_probs = []
buffer_rewards = []


class Policy(sy.Module):
    def __init__(self, torch_ref):
        super().__init__(torch_ref=torch_ref)
        self.affine1 = self.torch_ref.nn.Linear(4, 128)
        self.dropout = self.torch_ref.nn.Dropout(p=0.6)
        self.affine2 = self.torch_ref.nn.Linear(128, 2)

    def forward(self, x):
        x = self.affine1(x)
        x = self.dropout(x)
        x = remote_torch.relu(x)
        action_scores = self.affine2(x)
        return remote_torch.softmax(action_scores, dim=1)


policy = Policy(torch)
remote_policy = policy.send(duet)
optimizer = remote_torch.optim.Adam(remote_policy.parameters(), lr=1e-2)
eps = np.finfo(np.float32).eps.item()


# %%
def select_action(state):
    state = remote_torch.from_numpy(state).float().unsqueeze(0)
    probs = remote_policy(state)
    m = remote_torch.distributions.Categorical(probs)
    action = m.sample()
    buffer_saved_log_probs.append(m.log_prob(action))
    return action.item()


def finish_episode():
    R = duet.python.Float(0)
    policy_loss = duet.python.List([])
    returns = duet.python.List([])
    for r in buffer_rewards[::-1]:
        R = r + config["gamma"] * R
        returns.insert(0, R)
    returns = remote_torch.Tensor(returns)
    returns = (returns - returns.mean()) / (returns.std() + eps)
    for log_prob, R in zip(buffer_saved_log_probs, returns, strict=False):
        policy_loss.append(-log_prob * R)
    optimizer.zero_grad()
    policy_loss = remote_torch.cat(policy_loss).sum()
    policy_loss.backward()
    optimizer.step()
    del buffer_rewards[:]
    del buffer_saved_log_probs[:]


# %%
reward_threshold = duet.store["reward_threshold"].get(request_block=True, delete_obj=False)
print(f"reward_threshold is {reward_threshold}")

# %% tags=["raises-exception"]
remote_gym = duet.gym
remote_env = remote_gym.make("CartPole-v0")
remote_env.seed(config["seed"])

# %%
running_reward = 10
for i_episode in count(1):
    state, ep_reward = remote_env.reset(), duet.python.Float(0)
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
        print(f"Episode {i_episode}\tAverage reward: {running_reward:.2f}")
    if running_reward > reward_threshold:
        print(f"Solved! Running reward is now {running_reward} after {steps} time steps")
        break
    if config["dry_run"]:
        break
