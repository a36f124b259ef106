"""Training the refine model: SFT records, the TRL SFT script, the WCXB data preparation."""
