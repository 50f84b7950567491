"""Capture of the images a model is unsure of (issue 17): the folder layout and its background writer."""
