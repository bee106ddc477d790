"""Differential privacy the owner enforces (issue 19): budgets per scientist and dataset in an
append-only SQLite ledger, DP statistics with OpenDP's noise, DP-SGD jobs run by the owner with
Opacus, and the accounting that prices them all.

The owner's core only: nothing here speaks the wire protocol or knows a session.
"""

from .accounting import (
    DpSgd,
    Gaussian,
    Laplace,
    Mechanism,
    mechanism_from_json,
    noise_for,
    rdp_epsilon,
    spent,
)
from .ledger import BudgetExceeded, Ledger, LedgerCorrupt, Quote, Reservation, Standing
from .statistics import KINDS, count, histogram, mean, price_statistic, sum
from .training import LOSSES, OPTIMIZERS, price_training, train_dp

__all__ = [
    "KINDS",
    "LOSSES",
    "OPTIMIZERS",
    "BudgetExceeded",
    "DpSgd",
    "Gaussian",
    "Laplace",
    "Ledger",
    "LedgerCorrupt",
    "Mechanism",
    "Quote",
    "Reservation",
    "Standing",
    "count",
    "histogram",
    "mean",
    "mechanism_from_json",
    "noise_for",
    "price_statistic",
    "price_training",
    "rdp_epsilon",
    "spent",
    "sum",
    "train_dp",
]
