// Generated from docs/openapi.json (a test checks that they are equal): edit the JSON, then
// regenerate this file with scripts/openapi-embed.

/// The admin API's OpenAPI 3 document, served at `GET /openapi.json` (checked in as docs/openapi.json).
public enum OpenAPIDocument {
    /// The document's JSON text.
    public static let json = #"""
{
  "openapi": "3.0.3",
  "info": {
    "title": "Tenantry admin API",
    "version": "1.0.0",
    "description": "The superadmin migration endpoints of `tenantry serve`: move a multi-tenant PostgreSQL application from one shared database to a database per tenant, online. See docs/api.md."
  },
  "servers": [
    {
      "url": "http://127.0.0.1:8080"
    }
  ],
  "components": {
    "securitySchemes": {
      "bearer": {
        "type": "http",
        "scheme": "bearer",
        "description": "TENANTRY_ADMIN_TOKEN"
      }
    },
    "schemas": {
      "TenantID": {
        "type": "string",
        "pattern": "^[a-z0-9][a-z0-9_]{0,39}$",
        "example": "1"
      },
      "Error": {
        "type": "object",
        "additionalProperties": false,
        "properties": {
          "error": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
              "code": {
                "type": "string",
                "example": "tenant_not_found"
              },
              "message": {
                "type": "string"
              }
            },
            "required": [
              "code",
              "message"
            ]
          }
        },
        "required": [
          "error"
        ]
      },
      "JobAccepted": {
        "type": "object",
        "additionalProperties": false,
        "properties": {
          "job": {
            "type": "string"
          },
          "state": {
            "type": "string",
            "enum": [
              "queued"
            ]
          },
          "kind": {
            "type": "string"
          }
        },
        "required": [
          "job",
          "state",
          "kind"
        ]
      },
      "Job": {
        "type": "object",
        "additionalProperties": false,
        "properties": {
          "id": {
            "type": "string"
          },
          "kind": {
            "type": "string"
          },
          "actor": {
            "type": "string"
          },
          "state": {
            "type": "string",
            "enum": [
              "queued",
              "running",
              "succeeded",
              "failed"
            ]
          },
          "createdAt": {
            "type": "string",
            "format": "date-time"
          },
          "startedAt": {
            "type": "string",
            "format": "date-time"
          },
          "finishedAt": {
            "type": "string",
            "format": "date-time"
          },
          "progress": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
              "done": {
                "type": "integer"
              },
              "total": {
                "type": "integer"
              },
              "message": {
                "type": "string"
              }
            },
            "required": [
              "done",
              "total",
              "message"
            ]
          },
          "result": {
            "description": "The operation's report (as the CLI's --json prints it)"
          },
          "error": {
            "type": "object",
            "additionalProperties": false,
            "properties": {
              "code": {
                "type": "string"
              },
              "message": {
                "type": "string"
              }
            },
            "required": [
              "code",
              "message"
            ]
          }
        },
        "required": [
          "id",
          "kind",
          "actor",
          "state",
          "createdAt",
          "progress"
        ]
      },
      "ReadPolicy": {
        "type": "object",
        "properties": {
          "strategy": {
            "type": "string"
          },
          "percentage": {
            "type": "integer"
          },
          "shopIDs": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/TenantID"
            }
          },
          "canaryIDs": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/TenantID"
            }
          },
          "enableFallback": {
            "type": "boolean"
          },
          "verifyConsistency": {
            "type": "boolean"
          },
          "logInconsistencies": {
            "type": "boolean"
          },
          "verifySampleRate": {
            "type": "number"
          }
        }
      },
      "ReadsReport": {
        "type": "object",
        "additionalProperties": false,
        "properties": {
          "policy": {
            "$ref": "#/components/schemas/ReadPolicy"
          },
          "previous": {
            "$ref": "#/components/schemas/ReadPolicy"
          },
          "withoutDatabase": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/TenantID"
            }
          }
        }
      },
      "TenantList": {
        "type": "array",
        "items": {
          "$ref": "#/components/schemas/TenantID"
        },
        "minItems": 1,
        "maxItems": 10000,
        "description": "Tenant ids (at least one). To act on every tenant, send \"all\": true instead.",
        "example": [
          "1",
          "2"
        ]
      },
      "AllTenants": {
        "type": "boolean",
        "enum": [
          true
        ],
        "description": "true: every tenant the operation applies to. Exactly one of `tenants` and `all` is required: a destructive request says what it acts on."
      },
      "ProvisionRequest": {
        "type": "object",
        "additionalProperties": false,
        "properties": {
          "tenants": {
            "$ref": "#/components/schemas/TenantList"
          },
          "all": {
            "$ref": "#/components/schemas/AllTenants"
          },
          "concurrency": {
            "type": "integer",
            "minimum": 1,
            "maximum": 64,
            "default": 4
          },
          "server": {
            "type": "string",
            "description": "A registered server to place new databases on (default: spread over every server)"
          }
        },
        "oneOf": [
          {
            "required": [
              "tenants"
            ]
          },
          {
            "required": [
              "all"
            ]
          }
        ]
      },
      "MigrateDataRequest": {
        "type": "object",
        "additionalProperties": false,
        "properties": {
          "tenants": {
            "$ref": "#/components/schemas/TenantList"
          },
          "all": {
            "$ref": "#/components/schemas/AllTenants"
          },
          "concurrency": {
            "type": "integer",
            "minimum": 1,
            "maximum": 32,
            "default": 2
          },
          "captureTimeoutSeconds": {
            "type": "integer",
            "minimum": 1,
            "maximum": 3600,
            "default": 30
          }
        },
        "oneOf": [
          {
            "required": [
              "tenants"
            ]
          },
          {
            "required": [
              "all"
            ]
          }
        ]
      },
      "VerifySyncRequest": {
        "type": "object",
        "additionalProperties": false,
        "properties": {
          "tenants": {
            "$ref": "#/components/schemas/TenantList"
          },
          "all": {
            "$ref": "#/components/schemas/AllTenants"
          },
          "chunkSize": {
            "type": "integer",
            "minimum": 2,
            "maximum": 10000000,
            "default": 10000
          }
        },
        "oneOf": [
          {
            "required": [
              "tenants"
            ]
          },
          {
            "required": [
              "all"
            ]
          }
        ]
      },
      "CutoverRequest": {
        "type": "object",
        "additionalProperties": false,
        "properties": {
          "tenants": {
            "$ref": "#/components/schemas/TenantList"
          },
          "all": {
            "$ref": "#/components/schemas/AllTenants"
          },
          "maxPauseMs": {
            "type": "integer",
            "minimum": 1,
            "maximum": 600000,
            "default": 500
          }
        },
        "oneOf": [
          {
            "required": [
              "tenants"
            ]
          },
          {
            "required": [
              "all"
            ]
          }
        ]
      },
      "RollbackRequest": {
        "type": "object",
        "additionalProperties": false,
        "properties": {
          "tenants": {
            "$ref": "#/components/schemas/TenantList"
          },
          "maxPauseMs": {
            "type": "integer",
            "minimum": 1,
            "maximum": 600000,
            "default": 5000
          }
        },
        "required": [
          "tenants"
        ]
      },
      "DualWriteRequest": {
        "type": "object",
        "additionalProperties": false,
        "properties": {
          "tenants": {
            "$ref": "#/components/schemas/TenantList"
          },
          "all": {
            "$ref": "#/components/schemas/AllTenants"
          },
          "enabled": {
            "type": "boolean",
            "default": true,
            "description": "false pauses sync instead (capture keeps the backlog)"
          }
        },
        "oneOf": [
          {
            "required": [
              "tenants"
            ]
          },
          {
            "required": [
              "all"
            ]
          }
        ]
      },
      "RetireRequest": {
        "type": "object",
        "additionalProperties": false,
        "properties": {
          "tenants": {
            "$ref": "#/components/schemas/TenantList"
          },
          "all": {
            "$ref": "#/components/schemas/AllTenants"
          },
          "dryRun": {
            "type": "boolean",
            "default": true,
            "description": "Default true: verify and count only. false archives and deletes, and needs confirm: true"
          },
          "confirm": {
            "type": "boolean",
            "description": "Must be true when dryRun is false"
          }
        },
        "oneOf": [
          {
            "required": [
              "tenants"
            ]
          },
          {
            "required": [
              "all"
            ]
          }
        ]
      },
      "ActivateReadsRequest": {
        "description": "The strategy, and the one field it needs: percentage for percentage, shops for shop-list, canary for canary; no other strategy's field.",
        "oneOf": [
          {
            "type": "object",
            "additionalProperties": false,
            "properties": {
              "strategy": {
                "type": "string",
                "enum": [
                  "unified",
                  "tenant"
                ]
              },
              "enableFallback": {
                "type": "boolean"
              },
              "verifyConsistency": {
                "type": "boolean"
              },
              "sampleRate": {
                "type": "number",
                "minimum": 0,
                "maximum": 1
              }
            },
            "required": [
              "strategy"
            ]
          },
          {
            "type": "object",
            "additionalProperties": false,
            "properties": {
              "strategy": {
                "type": "string",
                "enum": [
                  "percentage"
                ]
              },
              "percentage": {
                "type": "integer",
                "minimum": 0,
                "maximum": 100
              },
              "enableFallback": {
                "type": "boolean"
              },
              "verifyConsistency": {
                "type": "boolean"
              },
              "sampleRate": {
                "type": "number",
                "minimum": 0,
                "maximum": 1
              }
            },
            "required": [
              "strategy",
              "percentage"
            ]
          },
          {
            "type": "object",
            "additionalProperties": false,
            "properties": {
              "strategy": {
                "type": "string",
                "enum": [
                  "shop-list"
                ]
              },
              "shops": {
                "type": "array",
                "items": {
                  "$ref": "#/components/schemas/TenantID"
                },
                "minItems": 1,
                "maxItems": 10000
              },
              "enableFallback": {
                "type": "boolean"
              },
              "verifyConsistency": {
                "type": "boolean"
              },
              "sampleRate": {
                "type": "number",
                "minimum": 0,
                "maximum": 1
              }
            },
            "required": [
              "strategy",
              "shops"
            ]
          },
          {
            "type": "object",
            "additionalProperties": false,
            "properties": {
              "strategy": {
                "type": "string",
                "enum": [
                  "canary"
                ]
              },
              "canary": {
                "type": "array",
                "items": {
                  "$ref": "#/components/schemas/TenantID"
                },
                "minItems": 1,
                "maxItems": 10000
              },
              "enableFallback": {
                "type": "boolean"
              },
              "verifyConsistency": {
                "type": "boolean"
              },
              "sampleRate": {
                "type": "number",
                "minimum": 0,
                "maximum": 1
              }
            },
            "required": [
              "strategy",
              "canary"
            ]
          }
        ]
      },
      "DeadLetter": {
        "type": "object",
        "additionalProperties": false,
        "required": [
          "id",
          "tenant",
          "table",
          "operation",
          "key",
          "attempts",
          "error",
          "capturedAt",
          "deadAt",
          "direction"
        ],
        "properties": {
          "id": {
            "type": "integer"
          },
          "tenant": {
            "$ref": "#/components/schemas/TenantID"
          },
          "table": {
            "type": "string"
          },
          "operation": {
            "type": "string",
            "enum": [
              "insert",
              "update",
              "delete"
            ]
          },
          "key": {
            "type": "string",
            "description": "The row's key (or image), as JSON"
          },
          "attempts": {
            "type": "integer"
          },
          "error": {
            "type": "string"
          },
          "capturedAt": {
            "type": "string"
          },
          "deadAt": {
            "type": "string"
          },
          "direction": {
            "type": "string",
            "enum": [
              "forward",
              "reverse"
            ],
            "description": "forward: unified → tenant database (before cutover); reverse: tenant database → unified (after cutover; kept in the tenant database, copied into unified)"
          }
        }
      },
      "DoctorCheck": {
        "type": "object",
        "required": [
          "group",
          "name",
          "status",
          "passed",
          "detail"
        ],
        "properties": {
          "group": {
            "type": "string",
            "description": "environment, application database, tenant configuration, tenant databases, data routing"
          },
          "name": {
            "type": "string",
            "description": "The check within its group: connection, catalog, credentials, isolation, writes, …"
          },
          "status": {
            "type": "string",
            "enum": [
              "pass",
              "warn",
              "fail"
            ]
          },
          "passed": {
            "type": "boolean",
            "description": "status is not fail"
          },
          "detail": {
            "type": "string",
            "description": "Why, in one line; never a secret"
          }
        }
      },
      "DoctorReport": {
        "type": "object",
        "required": [
          "passed",
          "failed",
          "warnings",
          "checks"
        ],
        "properties": {
          "passed": {
            "type": "integer"
          },
          "failed": {
            "type": "integer"
          },
          "warnings": {
            "type": "integer"
          },
          "checks": {
            "type": "array",
            "items": {
              "$ref": "#/components/schemas/DoctorCheck"
            }
          }
        }
      }
    }
  },
  "paths": {
    "/health": {
      "get": {
        "summary": "Health: the catalog answers and is current",
        "responses": {
          "200": {
            "description": "Healthy",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object",
                  "properties": {
                    "status": {
                      "type": "string",
                      "enum": [
                        "ok"
                      ]
                    },
                    "catalogVersion": {
                      "type": "integer"
                    }
                  },
                  "additionalProperties": false,
                  "required": [
                    "status"
                  ]
                }
              }
            }
          },
          "503": {
            "description": "Unavailable",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object",
                  "properties": {
                    "status": {
                      "type": "string",
                      "enum": [
                        "unavailable"
                      ]
                    },
                    "error": {
                      "type": "string"
                    }
                  },
                  "additionalProperties": false,
                  "required": [
                    "status"
                  ]
                }
              }
            }
          }
        },
        "description": "Anonymous callers get only `status`. With the admin bearer token, also the catalog version, or the error (which may name a host or database).",
        "security": [
          {},
          {
            "bearer": []
          }
        ]
      }
    },
    "/metrics": {
      "get": {
        "summary": "Prometheus metrics (text exposition format)",
        "responses": {
          "200": {
            "description": "Metrics",
            "content": {
              "text/plain": {
                "schema": {
                  "type": "string"
                }
              }
            }
          }
        }
      }
    },
    "/openapi.json": {
      "get": {
        "summary": "This document",
        "responses": {
          "200": {
            "description": "OpenAPI 3 document",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object"
                }
              }
            }
          }
        }
      }
    },
    "/api/superadmin/migration/status": {
      "get": {
        "summary": "Migration status overview",
        "description": "Tenants by status, placement and phase, servers, the read policy, per-tenant capture state (as `tenantry status --json`), plus `relay` (counters of the relay running in the service) and `jobs` (counts by state).",
        "security": [
          {
            "bearer": []
          }
        ],
        "responses": {
          "200": {
            "description": "Status",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object"
                }
              }
            }
          },
          "401": {
            "description": "Missing or wrong bearer token",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/api/superadmin/migration/provision-all": {
      "post": {
        "summary": "Provision all shops",
        "description": "One database and role per tenant, from the derived schema (`tenantry provision`). `tenants` or `\"all\": true` (every shop of the unified database). Unknown tenant ids (not in the unified database) are 404.",
        "security": [
          {
            "bearer": []
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/ProvisionRequest"
              }
            }
          }
        },
        "responses": {
          "202": {
            "description": "Job accepted; poll its URL (also in Location)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/JobAccepted"
                }
              }
            }
          },
          "400": {
            "description": "Bad request: wrong types, a null, a field this endpoint does not use, no tenants and no \"all\": true (or both), an empty list, an invalid tenant id, a value out of range",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "Missing or wrong bearer token",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "Unknown tenant",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "The operation conflicts with the current state (e.g. capture not installed, a tenant in the wrong phase)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "413": {
            "description": "Body larger than 64 KiB",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The catalog or a database is unavailable, or the service is not configured",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/api/superadmin/migration/migrate-data": {
      "post": {
        "summary": "Bulk data migration",
        "description": "Capture on, one snapshot, COPY into each tenant database (`tenantry migrate-data`). `tenants` or `\"all\": true`. Resumable.",
        "security": [
          {
            "bearer": []
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/MigrateDataRequest"
              }
            }
          }
        },
        "responses": {
          "202": {
            "description": "Job accepted; poll its URL (also in Location)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/JobAccepted"
                }
              }
            }
          },
          "400": {
            "description": "Bad request: wrong types, a null, a field this endpoint does not use, no tenants and no \"all\": true (or both), an empty list, an invalid tenant id, a value out of range",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "Missing or wrong bearer token",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "Unknown tenant",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "The operation conflicts with the current state (e.g. capture not installed, a tenant in the wrong phase)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "413": {
            "description": "Body larger than 64 KiB",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The catalog or a database is unavailable, or the service is not configured",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/api/superadmin/migration/enable-dual-write": {
      "post": {
        "summary": "Enable (or pause) dual-write",
        "description": "Capture on and sync resumed; `enabled: false` pauses sync (capture keeps the backlog). `tenants` or `\"all\": true`. Synchronous.",
        "security": [
          {
            "bearer": []
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/DualWriteRequest"
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "Tenants changed",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object",
                  "additionalProperties": false,
                  "properties": {
                    "enabled": {
                      "type": "boolean"
                    },
                    "tenants": {
                      "type": "array",
                      "items": {
                        "$ref": "#/components/schemas/TenantID"
                      }
                    }
                  }
                }
              }
            }
          },
          "400": {
            "description": "Bad request: wrong types, a null, a field this endpoint does not use, no tenants and no \"all\": true (or both), an empty list, an invalid tenant id, a value out of range",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "Missing or wrong bearer token",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "Unknown tenant",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "The operation conflicts with the current state (e.g. capture not installed, a tenant in the wrong phase)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "413": {
            "description": "Body larger than 64 KiB",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The catalog or a database is unavailable, or the service is not configured",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/api/superadmin/migration/verify-sync": {
      "post": {
        "summary": "Verify data synchronization",
        "description": "Counts, chunk checksums and differing rows per table (`tenantry verify-sync`). `tenants` or `\"all\": true`. The job fails with `not_equal` when a tenant differs; the result names the rows.",
        "security": [
          {
            "bearer": []
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/VerifySyncRequest"
              }
            }
          }
        },
        "responses": {
          "202": {
            "description": "Job accepted; poll its URL (also in Location)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/JobAccepted"
                }
              }
            }
          },
          "400": {
            "description": "Bad request: wrong types, a null, a field this endpoint does not use, no tenants and no \"all\": true (or both), an empty list, an invalid tenant id, a value out of range",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "Missing or wrong bearer token",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "Unknown tenant",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "The operation conflicts with the current state (e.g. capture not installed, a tenant in the wrong phase)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "413": {
            "description": "Body larger than 64 KiB",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The catalog or a database is unavailable, or the service is not configured",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/api/superadmin/migration/activate-reads": {
      "post": {
        "summary": "Gradual read activation",
        "description": "Sets the read policy (`tenantry reads`): every router follows within a second. Synchronous.",
        "security": [
          {
            "bearer": []
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/ActivateReadsRequest"
              }
            }
          }
        },
        "responses": {
          "200": {
            "description": "The policy now and before",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/ReadsReport"
                }
              }
            }
          },
          "400": {
            "description": "Bad request: wrong types, a null, a field this endpoint does not use, no tenants and no \"all\": true (or both), an empty list, an invalid tenant id, a value out of range",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "Missing or wrong bearer token",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "Unknown tenant",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "The operation conflicts with the current state (e.g. capture not installed, a tenant in the wrong phase)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "413": {
            "description": "Body larger than 64 KiB",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The catalog or a database is unavailable, or the service is not configured",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/api/superadmin/migration/rollback-reads": {
      "post": {
        "summary": "Rollback read activation",
        "description": "Every read back to the unified database at once. Synchronous.",
        "security": [
          {
            "bearer": []
          }
        ],
        "responses": {
          "200": {
            "description": "The policy now and before",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/ReadsReport"
                }
              }
            }
          },
          "400": {
            "description": "Bad request: wrong types, a null, a field this endpoint does not use, no tenants and no \"all\": true (or both), an empty list, an invalid tenant id, a value out of range",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "Missing or wrong bearer token",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "Unknown tenant",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "The operation conflicts with the current state (e.g. capture not installed, a tenant in the wrong phase)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "413": {
            "description": "Body larger than 64 KiB",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The catalog or a database is unavailable, or the service is not configured",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/api/superadmin/migration/performance": {
      "get": {
        "summary": "Performance metrics",
        "description": "The service's performance monitor: statistics and the unified-vs-tenant comparison. With `measureSeconds`, first runs the sample workload (the same reads on both sides) for that long.",
        "security": [
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "measureSeconds",
            "in": "query",
            "schema": {
              "type": "integer",
              "minimum": 0,
              "maximum": 30
            }
          },
          {
            "name": "tenant",
            "in": "query",
            "description": "Comma-separated tenant ids to measure (default: every provisioned tenant)",
            "schema": {
              "type": "string",
              "pattern": "^[a-z0-9][a-z0-9_]{0,39}(,[a-z0-9][a-z0-9_]{0,39})*$"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "Statistics",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object",
                  "additionalProperties": false,
                  "properties": {
                    "stats": {
                      "type": "object"
                    },
                    "comparison": {
                      "type": "object"
                    },
                    "workload": {
                      "type": "object"
                    }
                  }
                }
              }
            }
          },
          "400": {
            "description": "Bad request: wrong types, unknown field, invalid tenant id, value out of range",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "Missing or wrong bearer token",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "Unknown tenant",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "413": {
            "description": "Body larger than 64 KiB",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The catalog or a database is unavailable, or the service is not configured",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/api/superadmin/migration/dead-letters": {
      "get": {
        "summary": "Dead letters",
        "description": "Changes the relay gave up on, in both directions (reverse-sync letters included), oldest first. A tenant with a dead letter is paused: `status` shows it, and cutover, rollback and retire-legacy refuse it until the letter is replayed or discarded (`tenantry dlq replay|discard`).",
        "security": [
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "tenant",
            "in": "query",
            "description": "Comma-separated tenant ids (default: all)",
            "schema": {
              "type": "string",
              "pattern": "^[a-z0-9][a-z0-9_]{0,39}(,[a-z0-9][a-z0-9_]{0,39})*$"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "The dead letters",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object",
                  "additionalProperties": false,
                  "required": [
                    "deadLetters"
                  ],
                  "properties": {
                    "deadLetters": {
                      "type": "array",
                      "items": {
                        "$ref": "#/components/schemas/DeadLetter"
                      }
                    }
                  }
                }
              }
            }
          },
          "400": {
            "description": "Bad request: wrong types, unknown field, invalid tenant id, value out of range",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "Missing or wrong bearer token",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "Unknown tenant",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The catalog or a database is unavailable, or the service is not configured",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/api/superadmin/migration/retire-legacy": {
      "post": {
        "summary": "Retire legacy tables",
        "description": "Verify, archive (on the server, in its --archive-dir) and delete dedicated tenants' rows from the unified database (`tenantry retire-legacy`). `tenants` or `\"all\": true`. A dry run (verify and count) unless `\"dryRun\": false`, which needs `\"confirm\": true`.",
        "security": [
          {
            "bearer": []
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/RetireRequest"
              }
            }
          }
        },
        "responses": {
          "202": {
            "description": "Job accepted; poll its URL (also in Location)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/JobAccepted"
                }
              }
            }
          },
          "400": {
            "description": "Bad request: wrong types, a null, a field this endpoint does not use, no tenants and no \"all\": true (or both), an empty list, an invalid tenant id, a value out of range",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "Missing or wrong bearer token",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "Unknown tenant",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "The operation conflicts with the current state (e.g. capture not installed, a tenant in the wrong phase)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "413": {
            "description": "Body larger than 64 KiB",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The catalog or a database is unavailable, or the service is not configured",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/api/superadmin/migration/cutover": {
      "post": {
        "summary": "Cut over writes",
        "description": "Per tenant: a short write pause, then writes go to the tenant database (`tenantry cutover`). `tenants` or `\"all\": true` (every syncing tenant).",
        "security": [
          {
            "bearer": []
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/CutoverRequest"
              }
            }
          }
        },
        "responses": {
          "202": {
            "description": "Job accepted; poll its URL (also in Location)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/JobAccepted"
                }
              }
            }
          },
          "400": {
            "description": "Bad request: wrong types, a null, a field this endpoint does not use, no tenants and no \"all\": true (or both), an empty list, an invalid tenant id, a value out of range",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "Missing or wrong bearer token",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "Unknown tenant",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "The operation conflicts with the current state (e.g. capture not installed, a tenant in the wrong phase)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "413": {
            "description": "Body larger than 64 KiB",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The catalog or a database is unavailable, or the service is not configured",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/api/superadmin/migration/rollback": {
      "post": {
        "summary": "Roll back tenants",
        "description": "Back to the unified database from any phase, nothing lost (`tenantry rollback`). `tenants` is required.",
        "security": [
          {
            "bearer": []
          }
        ],
        "requestBody": {
          "required": true,
          "content": {
            "application/json": {
              "schema": {
                "$ref": "#/components/schemas/RollbackRequest"
              }
            }
          }
        },
        "responses": {
          "202": {
            "description": "Job accepted; poll its URL (also in Location)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/JobAccepted"
                }
              }
            }
          },
          "400": {
            "description": "Bad request: wrong types, a null, a field this endpoint does not use, no tenants and no \"all\": true (or both), an empty list, an invalid tenant id, a value out of range",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "Missing or wrong bearer token",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "Unknown tenant",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "409": {
            "description": "The operation conflicts with the current state (e.g. capture not installed, a tenant in the wrong phase)",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "413": {
            "description": "Body larger than 64 KiB",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "503": {
            "description": "The catalog or a database is unavailable, or the service is not configured",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/api/superadmin/doctor": {
      "get": {
        "summary": "Setup checks (tenantry doctor)",
        "description": "The checks of `tenantry doctor --json`: configuration, the unified database and catalog, capture, tenant placements and credentials, isolation of tenant roles, connections with each tenant's own login, and a write routed per tenant. 200 whatever they find: `failed` counts the failed checks. No detail holds a secret.",
        "security": [
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "sample",
            "in": "query",
            "required": false,
            "description": "At most this many tenants are connected to and routed (0: all).",
            "schema": {
              "type": "integer",
              "minimum": 0,
              "maximum": 10000,
              "default": 20
            }
          }
        ],
        "responses": {
          "200": {
            "description": "The checks",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/DoctorReport"
                }
              }
            }
          },
          "400": {
            "description": "sample out of range",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "401": {
            "description": "Missing or wrong bearer token",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/api/superadmin/jobs": {
      "get": {
        "summary": "Jobs, newest first",
        "security": [
          {
            "bearer": []
          }
        ],
        "responses": {
          "200": {
            "description": "Jobs",
            "content": {
              "application/json": {
                "schema": {
                  "type": "object",
                  "additionalProperties": false,
                  "properties": {
                    "jobs": {
                      "type": "array",
                      "items": {
                        "$ref": "#/components/schemas/Job"
                      }
                    }
                  }
                }
              }
            }
          },
          "401": {
            "description": "Missing or wrong bearer token",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    },
    "/api/superadmin/jobs/{id}": {
      "get": {
        "summary": "A job's state, progress and result",
        "security": [
          {
            "bearer": []
          }
        ],
        "parameters": [
          {
            "name": "id",
            "in": "path",
            "required": true,
            "schema": {
              "type": "string"
            }
          }
        ],
        "responses": {
          "200": {
            "description": "The job",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Job"
                }
              }
            }
          },
          "401": {
            "description": "Missing or wrong bearer token",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          },
          "404": {
            "description": "No such job",
            "content": {
              "application/json": {
                "schema": {
                  "$ref": "#/components/schemas/Error"
                }
              }
            }
          }
        }
      }
    }
  }
}
"""#
}
