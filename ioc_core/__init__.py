"""What every service of the IOC shares: settings, database access and migrations, the event
envelope, topic names and logging."""
