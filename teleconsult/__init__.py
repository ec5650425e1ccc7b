"""teleconsult: doctor-to-doctor telemedicine for a hub-and-spoke health network."""
