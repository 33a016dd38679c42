"""Tenancy: partner institutions, their credentials and quotas, and the TenantAdmin API."""
