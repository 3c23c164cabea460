"""The models by name: model configs (`<name>.json`) and variants."""
