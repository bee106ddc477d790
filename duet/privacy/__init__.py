"""Differential privacy the owner enforces (issue 19): budgets per scientist and dataset in an
append-only SQLite ledger, DP statistics with OpenDP's noise (on 1-D data, and on published
tables, whole or by group), DP-SGD jobs run by the owner with Opacus, and the accounting that
prices them all.

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
from .grouped import GROUPED_KINDS, MAX_KEYS, price_grouped
from .ledger import BudgetExceeded, Ledger, LedgerCorrupt, Quote, Reservation, Standing
from .statistics import KINDS, count, histogram, mean, price_statistic, sum
from .tables import Table, price_on_table, statistic_on_table
from .training import LOSSES, OPTIMIZERS, price_training, train_dp

__all__ = [
    "GROUPED_KINDS",
    "KINDS",
    "LOSSES",
    "MAX_KEYS",
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
    "Table",
    "count",
    "histogram",
    "mean",
    "mechanism_from_json",
    "noise_for",
    "price_grouped",
    "price_on_table",
    "price_statistic",
    "price_training",
    "rdp_epsilon",
    "spent",
    "statistic_on_table",
    "sum",
    "train_dp",
]
