"""The tiering engine: published schemes and their versions (`schemes`), what a compiled
scheme reads from (`sources`), full, incremental and preview runs (`evaluation`), segment
reports (`analytics`), strategies (`strategies`), scheduled runs (`scheduler`), webhook
delivery of tier changes (`webhooks`), the built-in templates (`templates`) and predictions of
repeat buying, lifetime value and churn risk (`predictions`)."""
