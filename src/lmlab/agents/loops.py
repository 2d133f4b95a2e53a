"""The three interaction loops that drive the agents, one ``advance()`` at a time:

- ``TabularLoop``: one environment, one step, one TD update (Q-learning, SARSA);
- ``OffPolicyLoop``: a vector step into the replay buffer, then ``gradient_steps`` updates every
  ``train_freq`` steps once ``learning_starts`` steps are stored (DQN, DDPG, TD3, SAC);
- ``OnPolicyLoop``: ``n_steps`` vector steps into a rollout, GAE, then the update (VPG, A2C,
  PPO).

Each counts environment steps (``step``, over all envs), tracks finished episodes' returns and
the update metrics until ``drain()``, and has a ``state_dict`` holding everything a resumed run
needs to continue exactly: the agent, the pickled environments (mid-episode; a MuJoCo env's
simulation state apart, as pickling drops it), the buffer, the generators. A time-limit
truncation is not an episode end for bootstrapping: off-policy rows store only
``terminated``; on-policy rewards get + gamma V(final obs) on truncation.
"""

from __future__ import annotations

import pickle

import numpy as np
import torch

from lmlab.agents.buffer import ReplayBuffer
from lmlab.agents.envs import load_sim_state, sim_state


class Tracker:
    """Per-env running returns and lengths; finished episodes and summed metrics until drained."""

    def __init__(self, n: int):
        self.ret, self.len = np.zeros(n), np.zeros(n, np.int64)
        self.done_returns: list[float] = []
        self.done_lengths: list[int] = []
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, reward, done) -> None:
        self.ret += reward
        self.len += 1
        if done.any():
            for i in np.flatnonzero(done):
                self.done_returns.append(float(self.ret[i]))
                self.done_lengths.append(int(self.len[i]))
            self.ret[done], self.len[done] = 0.0, 0

    def metrics(self, m: dict) -> None:
        for k, v in m.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v)
            self.counts[k] = self.counts.get(k, 0) + 1

    def drain(self) -> dict:
        out = {f"train/{k}": self.sums[k] / self.counts[k] for k in self.sums}
        if self.done_returns:
            out["train/return"] = float(np.mean(self.done_returns))
            out["train/episode_length"] = float(np.mean(self.done_lengths))
        out["train/episodes"] = len(self.done_returns)
        self.done_returns, self.done_lengths, self.sums, self.counts = [], [], {}, {}
        return out

    def state_dict(self) -> dict:
        return dict(vars(self))

    def load_state_dict(self, state: dict) -> None:
        vars(self).update(state)


class _Base:
    def __init__(self, agent, envs, cfg, seed: int):
        self.agent, self.envs, self.cfg = agent, envs, cfg
        self.step = 0
        self.rng = np.random.default_rng([seed, 1])
        n = getattr(envs, "num_envs", 1)
        self.tracker = Tracker(n)

    def drain(self) -> dict:
        return self.tracker.drain()

    def state_dict(self) -> dict:
        return {"step": self.step, "agent": self.agent.state_dict(),
                "envs": pickle.dumps(self.envs), "sim": sim_state(self.envs),
                "rng": self.rng.bit_generator.state,
                "tracker": self.tracker.state_dict(), "torch_rng": torch.get_rng_state(),
                **self._extra_state()}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        self.agent.load_state_dict(state["agent"])
        self.envs = pickle.loads(state["envs"])
        load_sim_state(self.envs, state["sim"])
        self.rng.bit_generator.state = state["rng"]
        self.tracker.load_state_dict(state["tracker"])
        torch.set_rng_state(state["torch_rng"])
        self._load_extra(state)

    def _extra_state(self) -> dict:
        return {}

    def _load_extra(self, state: dict) -> None:
        pass


class TabularLoop(_Base):
    def __init__(self, agent, env, cfg, seed: int):
        super().__init__(agent, env, cfg, seed)
        s, _ = env.reset(seed=seed)
        self.s, self.a = int(s), int(agent.act([s], explore=True)[0])

    def advance(self) -> None:
        env, agent = self.envs, self.agent
        s2, r, term, trunc, _ = env.step(self.a)
        self.step += 1
        agent.step = self.step
        a2 = int(agent.act([s2], explore=True)[0])
        err = agent.learn(self.s, self.a, float(r), int(s2), bool(term), a2)
        self.tracker.add(r, np.array([term or trunc]))
        self.tracker.metrics({"td_error_abs": abs(err)})
        if term or trunc:
            s2, _ = env.reset()
            a2 = int(agent.act([s2], explore=True)[0])
        self.s, self.a = int(s2), a2

    def _extra_state(self) -> dict:
        return {"s": self.s, "a": self.a}

    def _load_extra(self, state: dict) -> None:
        self.s, self.a = state["s"], state["a"]


class OffPolicyLoop(_Base):
    def __init__(self, agent, envs, cfg, seed: int):
        super().__init__(agent, envs, cfg, seed)
        obs, _ = envs.reset(seed=seed)
        self.obs = agent.encode(obs)
        cap = min(cfg.buffer_size, cfg.max_steps + envs.num_envs)
        self.buffer = ReplayBuffer(cap, self.obs.shape[1], agent.act_shape, agent.act_dtype)
        self.calls = 0

    def advance(self) -> None:
        agent, cfg, n = self.agent, self.cfg, self.envs.num_envs
        if self.step < cfg.learning_starts:
            a = agent.random_action(n, self.rng)
        else:
            a = agent.act(self.obs, explore=True)
        nxt, r, term, trunc, info = self.envs.step(agent.to_env(a))
        nxt = agent.encode(nxt)
        real = nxt
        done = term | trunc
        if done.any():  # SAME_STEP autoreset: the last observation is in info
            real = nxt.copy()
            for i in np.flatnonzero(done):
                real[i] = agent.encode(info["final_obs"][i][None])[0]
        self.buffer.add(self.obs, a, r, real, term)
        self.obs = nxt
        self.step += n
        self.calls += 1
        agent.step = self.step
        agent.on_step()
        self.tracker.add(r, done)
        if self.step > cfg.learning_starts and self.calls % cfg.train_freq == 0:
            if hasattr(agent, "round_start"):  # DQN: the lr schedule's value for this round
                agent.round_start()
            for _ in range(cfg.gradient_steps):
                self.tracker.metrics(agent.update(self.buffer.sample(cfg.batch_size, self.rng)))

    def _extra_state(self) -> dict:
        return {"obs": self.obs, "calls": self.calls, "buffer": self.buffer.state_dict()}

    def _load_extra(self, state: dict) -> None:
        self.obs, self.calls = state["obs"], state["calls"]
        self.buffer.load_state_dict(state["buffer"])


class OnPolicyLoop(_Base):
    def __init__(self, agent, envs, cfg, seed: int):
        super().__init__(agent, envs, cfg, seed)
        obs, _ = envs.reset(seed=seed)
        self.obs = agent.encode(obs)

    def advance(self) -> None:
        """One rollout of ``n_steps`` x n envs, its advantages, one update."""
        from lmlab.rl.advantages import gae

        agent, cfg, n, T = self.agent, self.cfg, self.envs.num_envs, self.cfg.n_steps
        obs = np.zeros((T, n, self.obs.shape[1]), np.float32)
        acts, logps = [], np.zeros((T, n), np.float32)
        rew, dones, vals = (np.zeros((T, n), np.float32) for _ in range(3))
        for t in range(T):
            a, logp, v = agent.act_train(self.obs)
            nxt, r, term, trunc, info = self.envs.step(agent.to_env(a))
            done = term | trunc
            self.tracker.add(r, done)
            r = r.astype(np.float32)
            cut = trunc & ~term
            if cut.any():  # a time limit, not an end: bootstrap from the last observation
                last = agent.encode(np.stack([info["final_obs"][i] for i in np.flatnonzero(cut)]))
                r[cut] += cfg.gamma * agent.value(last)
            obs[t], logps[t], rew[t], dones[t], vals[t] = self.obs, logp, r, done, v
            acts.append(a)
            self.obs = agent.encode(nxt)
        self.step += T * n
        agent.step = self.step
        # (N envs, T steps), the LLM side's layout
        adv, ret = gae(torch.from_numpy(rew.T), torch.from_numpy(vals.T), torch.ones(n, T),
                       gamma=cfg.gamma, lam=cfg.gae_lambda, dones=torch.from_numpy(dones.T),
                       last_value=torch.from_numpy(agent.value(self.obs)))
        batch = {"obs": torch.from_numpy(obs.reshape(T * n, -1)),
                 "act": torch.from_numpy(np.stack(acts).reshape(T * n, *acts[0].shape[1:])),
                 "logp": torch.from_numpy(logps.reshape(-1)),
                 "val": torch.from_numpy(vals.reshape(-1)),
                 "adv": adv.T.reshape(-1), "ret": ret.T.reshape(-1)}
        self.tracker.metrics(agent.update(batch))

    def _extra_state(self) -> dict:
        return {"obs": self.obs}

    def _load_extra(self, state: dict) -> None:
        self.obs = state["obs"]


def make_loop(family: str, agent, envs, cfg, seed: int):
    return {"tabular": TabularLoop, "offpolicy": OffPolicyLoop,
            "onpolicy": OnPolicyLoop}[family](agent, envs, cfg, seed)
