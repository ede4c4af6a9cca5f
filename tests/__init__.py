"""The template's own tests: bake, check, install and run every combination."""
