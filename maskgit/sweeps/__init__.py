"""Experiments as jobs: submitting a sweep or a study from one machine (submit) and one
job on whichever machine runs it (job)."""
