from tests.conftest import alembic


def test_migrations_match_the_models(migrated_database_url: str) -> None:
    check = alembic(migrated_database_url, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "No new upgrade operations detected" in check.stdout


def test_migrations_downgrade_and_upgrade_again(migrated_database_url: str) -> None:
    for step in (["downgrade", "base"], ["upgrade", "head"]):
        result = alembic(migrated_database_url, *step)
        assert result.returncode == 0, result.stderr
    # At the head again, whichever revision that is.
    assert "(head)" in alembic(migrated_database_url, "current").stdout
