"""Operations: the daemon, status, health pings and sd_notify, systemd units, logins."""
