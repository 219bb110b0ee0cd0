"""The worked examples in the reports' docstrings (``>>>``) run and hold."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("module, examples", [("reports.ablation", 7),  # in_value_order, seeds_text, control_kinds
                                              ("reports.across", 3),  # verdict_text, relative_text
                                              ("reports.errors", 1),  # common_recall
                                              ("reports.runs", 3)])  # trained_on, is_flat
def test_the_worked_examples_hold(module, examples):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted >= examples and result.failed == 0
