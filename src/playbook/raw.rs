//! Raw serde mirror of the YAML.
