"""Privacy for the federated modes: secure aggregation (:mod:`.secure_aggregation`)."""
