"""Datasets: real-data fetchers, the embedded sample, layouts, torch datasets, verify and show."""
