"""Hooks: the events Stovepipe tells downstream teams about, and their delivery."""
