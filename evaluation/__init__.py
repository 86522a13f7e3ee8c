"""Relevance evaluation, tuning and user feedback for the product index.

The pipeline the design card draws as ``judgments / click events -> eval -> tune -> profile
file + Dashboards``: pure metric functions (:mod:`.metrics`), judgment files (:mod:`.judgments`),
running profiles side by side (:mod:`.runner`), the evaluation-results index
(:mod:`.results_index`), random-search tuning (:mod:`.tune`), the user-behaviour event format
(:mod:`.events`) and the click model that turns clicks into graded judgments
(:mod:`.click_model`).  Nothing here imports the query builder: a profile is run through a
search callable, so the modules are testable with any ranking.
"""
