"""Offline checks of the Bicep in infra/ (no Bicep compiler or Azure access is available).

Each `.bicep` file is parsed with tree-sitter-bicep; the checks are small helpers over that
syntax tree plus the JSON parameter files, `.funcignore` and `azure.yaml`.

What these checks see: syntax errors, declared vs referenced symbols, module paths and the
parameters passed to each module, the literal values of security-relevant properties, where the
role assignments live and how they are named, role definition ids against Azure's built-in ids,
secrets in outputs/defaults/parameter files, and what the package excludes.

What they cannot see (a real `bicep build` / `az deployment ... what-if` is still needed):
types and type mismatches, whether a property name exists on a resource type or an API version
exists, whether a value is allowed by the resource provider (regions, SKUs, model versions,
quota), expressions that only resolve at deployment time, and RBAC propagation at run time.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import re
from pathlib import Path

import pytest
import tree_sitter as ts
import tree_sitter_bicep as tsb

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))
ENV_PARAMETER_FILES = {
    "dev": INFRA / "env" / "dev.parameters.json",
    "staging": INFRA / "env" / "staging.parameters.json",
    "prod": INFRA / "env" / "prod.parameters.json",
}
PARAMETER_FILES = [INFRA / "main.parameters.json", *ENV_PARAMETER_FILES.values()]

# Azure built-in role definition ids (the same in every tenant) and their names.
BUILT_IN_ROLES = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "ba92f5b4-2d11-453d-a403-e96b0029c9fe": "Storage Blob Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
    "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd": "Cognitive Services OpenAI User",
}
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I)

GATEWAY_APP_SETTINGS = {
    "LLM_ROUTING_CONFIG",
    "LLM_KEYVAULT_URL",
    "LLM_BREAKER_TABLE",
    "LLM_USAGE_TABLE",
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "AzureWebJobsStorage__tableServiceUri",
    "AZURE_CLIENT_ID",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "PYTHON_ENABLE_INIT_INDEXING",
    "AZURE_OPENAI_ENDPOINT",
}
# Not supported as app settings on Flex Consumption (runtime lives in functionAppConfig).
FLEX_UNSUPPORTED_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
}

DECLARATIONS = {
    "parameter_declaration": "param",
    "variable_declaration": "var",
    "resource_declaration": "resource",
    "module_declaration": "module",
    "output_declaration": "output",
    "user_defined_function": "func",
    "type_declaration": "type",
}
BUILT_IN_NAMESPACES = {"az", "sys"}


# --------------------------------------------------------------------------- syntax tree helpers

_PARSER = ts.Parser(ts.Language(tsb.language()))


@functools.cache
def tree(path: Path) -> ts.Tree:
    return _PARSER.parse(path.read_bytes())


def text(node: ts.Node) -> str:
    return node.text.decode()


def walk(node: ts.Node):
    yield node
    for child in node.children:
        yield from walk(child)


def named(node: ts.Node, type_: str | None = None) -> list[ts.Node]:
    return [c for c in node.named_children if c.type != "comment" and (type_ is None or c.type == type_)]


def decl_name(decl: ts.Node) -> str:
    return text(named(decl, "identifier")[0])


def top_level(path: Path, type_: str) -> list[ts.Node]:
    return named(tree(path).root_node, type_)


def decorators_of(decl: ts.Node) -> list[str]:
    """Names of the decorators written just before a declaration (a sibling `decorators` node)."""
    prev = decl.prev_named_sibling
    if prev is None or prev.type != "decorators":
        return []
    return [text(named(named(d)[0], "identifier")[0]) for d in named(prev, "decorator")]


def has_default(param: ts.Node) -> bool:
    return any(c.type == "=" for c in param.children)


def params_of(path: Path) -> dict[str, ts.Node]:
    return {decl_name(p): p for p in top_level(path, "parameter_declaration")}


def string_value(node: ts.Node | None) -> str | None:
    """The value of a plain string literal, or None for anything computed."""
    if node is None or node.type != "string" or any(c.type == "interpolation" for c in node.named_children):
        return None
    return "".join(text(c) if c.type == "string_content" else text(c)[1:] for c in node.named_children)


def literal(node: ts.Node | None):
    if node is None:
        return None
    if node.type == "boolean":
        return text(node) == "true"
    if node.type == "number":
        return int(text(node))
    if node.type == "null":
        return None
    return string_value(node)


def prop_key(prop: ts.Node) -> str:
    key = named(prop)[0]
    return string_value(key) if key.type == "string" else text(key)


def props(obj: ts.Node) -> dict[str, ts.Node]:
    """Key -> value node of an object literal (nested resources are skipped)."""
    out = {}
    for prop in named(obj, "object_property"):
        parts = named(prop)
        if len(parts) == 2:
            out[prop_key(prop)] = parts[1]
    return out


def get(obj: ts.Node | None, dotted: str) -> ts.Node | None:
    for key in dotted.split("."):
        if obj is None or obj.type != "object":
            return None
        obj = props(obj).get(key)
    return obj


def body(decl: ts.Node) -> ts.Node:
    """The object literal of a resource/module, looking through `if (...)` and `[for ...]`."""
    node = named(decl)[-1]
    while node.type in ("if_statement", "for_statement"):
        node = named(node)[-1]
    assert node.type == "object", f"unexpected body {node.type} in {text(decl)[:60]}"
    return node


def resource_type(decl: ts.Node) -> str:
    return string_value(named(decl, "string")[0])


def resources(path: Path, type_prefix: str) -> list[ts.Node]:
    """Resource declarations (nested ones too) whose type starts with type_prefix."""
    found = []
    for node in walk(tree(path).root_node):
        if node.type == "resource_declaration" and resource_type(node).startswith(type_prefix):
            found.append(node)
    return found


def the_resource(path: Path, type_prefix: str) -> ts.Node:
    found = resources(path, type_prefix)
    assert len(found) == 1, f"expected one {type_prefix} in {path.name}, found {len(found)}"
    return found[0]


def references(path: Path) -> dict[str, list[int]]:
    """Identifiers used as symbol references, with the lines they are on.

    Not references: object keys, the names being declared, called function names, `parent::child`
    child names, and loop variables / lambda parameters (their uses inside their own scope are
    resolved here too, so they never count as undeclared).
    """
    refs: dict[str, list[int]] = {}

    def visit(node: ts.Node, local: frozenset[str]) -> None:
        if node.type in ("for_statement", "lambda_expression"):
            bound, seen_in = set(), False
            for child in node.children:
                if child.type in ("in", "=>"):
                    seen_in = True
                if not seen_in and child.type in ("identifier", "for_loop_parameters"):
                    bound |= {text(n) for n in walk(child) if n.type in ("identifier", "loop_variable", "loop_enumerator")}
            local = local | bound
            for child in node.children:
                if child.type in ("identifier", "for_loop_parameters") and text(child) in bound:
                    continue
                visit(child, local)
            return
        if node.type == "identifier":
            parent = node.parent
            field = parent.field_name_for_child(next(i for i, c in enumerate(parent.children) if c.id == node.id))
            is_key = parent.type == "object_property" and named(parent)[0].id == node.id
            is_decl_name = parent.type in DECLARATIONS and named(parent, "identifier")[0].id == node.id
            is_callee = parent.type == "call_expression" and field == "function"
            is_child_ref = parent.type == "resource_expression" and field == "resource"
            in_type = parent.type in ("type", "parameter")
            if not (is_key or is_decl_name or is_callee or is_child_ref or in_type or text(node) in local):
                refs.setdefault(text(node), []).append(node.start_point[0] + 1)
            return
        for child in node.children:
            visit(child, local)

    visit(tree(path).root_node, frozenset())
    return refs


def declared(path: Path) -> dict[str, list[str]]:
    """Symbol -> kinds it is declared as (top level, plus nested resources and imports)."""
    out: dict[str, list[str]] = {}
    for node in walk(tree(path).root_node):
        if node.type in DECLARATIONS:
            out.setdefault(decl_name(node), []).append(DECLARATIONS[node.type])
        elif node.type == "import_functionality":
            for ident in named(node, "identifier"):
                out.setdefault(text(ident), []).append("import")
    return out


def module_path(path: Path, module: ts.Node) -> Path:
    return (path.parent / string_value(named(module, "string")[0])).resolve()


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


ids = [rel(p) for p in BICEP_FILES]


# --------------------------------------------------------------------------- syntax and symbols


def test_infra_has_the_expected_files():
    names = {rel(p) for p in BICEP_FILES}
    assert {"infra/main.bicep", "infra/app/api.bicep", "infra/app/rbac.bicep"} <= names
    for path in PARAMETER_FILES + [INFRA / "abbreviations.json", ROOT / "azure.yaml", ROOT / ".funcignore"]:
        assert path.is_file(), rel(path)


@pytest.mark.parametrize("path", BICEP_FILES, ids=ids)
def test_bicep_parses_without_errors(path):
    bad = [
        f"line {n.start_point[0] + 1}: {'MISSING ' + n.type if n.is_missing else 'ERROR ' + text(n)[:60]!r}"
        for n in walk(tree(path).root_node)
        if n.type == "ERROR" or n.is_missing
    ]
    assert not bad, bad


@pytest.mark.parametrize("path", BICEP_FILES, ids=ids)
def test_no_symbol_is_declared_twice(path):
    # Outputs have a namespace of their own (`output name string = x.name` beside `param name`).
    symbols = {name: [k for k in kinds if k != "output"] for name, kinds in declared(path).items()}
    dupes = {name: kinds for name, kinds in symbols.items() if len(kinds) > 1}
    outputs = [decl_name(o) for o in top_level(path, "output_declaration")]
    assert not dupes
    assert len(outputs) == len(set(outputs))


@pytest.mark.parametrize("path", BICEP_FILES, ids=ids)
def test_every_reference_is_declared(path):
    known = set(declared(path)) | BUILT_IN_NAMESPACES
    undeclared = {name: lines for name, lines in references(path).items() if name not in known}
    assert not undeclared, f"undeclared symbols (name: lines): {undeclared}"


@pytest.mark.parametrize("path", BICEP_FILES, ids=ids)
def test_every_parameter_and_variable_is_used(path):
    used = set(references(path))
    unused = [
        f"{DECLARATIONS[d.type]} {decl_name(d)}"
        for kind in ("parameter_declaration", "variable_declaration")
        for d in top_level(path, kind)
        if decl_name(d) not in used
    ]
    assert not unused


@pytest.mark.parametrize("path", BICEP_FILES, ids=ids)
def test_decorators_are_known(path):
    known = {"description", "allowed", "minLength", "maxLength", "minValue", "maxValue", "metadata", "secure", "batchSize", "export", "sealed", "discriminator"}
    used = {text(named(named(d)[0], "identifier")[0]) for d in walk(tree(path).root_node) if d.type == "decorator"}
    assert used <= known, used - known


def test_target_scope_is_subscription():
    scope = top_level(MAIN, "target_scope_assignment")
    assert [string_value(named(s, "string")[0]) for s in scope] == ["subscription"]


# --------------------------------------------------------------------------- modules


def all_modules():
    return [(path, m) for path in BICEP_FILES for m in top_level(path, "module_declaration")]


@pytest.mark.parametrize("path,module", all_modules(), ids=lambda v: decl_name(v) if isinstance(v, ts.Node) else rel(v))
def test_module_path_exists_and_params_match(path, module):
    target = module_path(path, module)
    assert target.is_file(), f"module {decl_name(module)}: {target} missing"
    declared_params = params_of(target)
    params_node = get(body(module), "params")
    passed = props(params_node) if params_node is not None else {}
    unknown = set(passed) - set(declared_params)
    missing = {n for n, p in declared_params.items() if not has_default(p)} - set(passed)
    assert not (unknown or missing), f"{decl_name(module)}: undeclared params {unknown}, missing required {missing}"


def test_every_module_file_is_used():
    used = {module_path(path, m) for path, m in all_modules()}
    orphans = [rel(p) for p in BICEP_FILES if p != MAIN and p.resolve() not in used]
    assert not orphans


# --------------------------------------------------------------------------- role assignments

RBAC = INFRA / "app" / "rbac.bicep"


def test_role_assignments_all_live_in_rbac_bicep():
    elsewhere = [rel(p) for p in BICEP_FILES if p != RBAC and resources(p, "Microsoft.Authorization/roleAssignments")]
    assert not elsewhere
    assert resources(RBAC, "Microsoft.Authorization/roleAssignments")


def test_role_assignment_names_are_guid_of_scope_principal_role():
    for decl in resources(RBAC, "Microsoft.Authorization/roleAssignments"):
        obj = body(decl)
        name, scope = get(obj, "name"), get(obj, "scope")
        assert name.type == "call_expression" and text(named(name)[0]) == "guid", decl_name(decl)
        args = named(named(name, "arguments")[0])
        assert len(args) == 3, decl_name(decl)
        assert text(args[0]) == f"{text(scope)}.id", f"{decl_name(decl)}: guid() must start with its scope"
        principal = text(get(obj, "properties.principalId"))
        assert text(args[1]) == principal, f"{decl_name(decl)}: guid() must use the assigned principal"
        role_arg = text(args[2])
        assert role_arg in text(get(obj, "properties.roleDefinitionId")), f"{decl_name(decl)}: guid() role != assigned role"
        assert literal(get(obj, "properties.principalType")) in (None, "ServicePrincipal")


@pytest.mark.parametrize("path", BICEP_FILES, ids=ids)
def test_role_ids_are_known_and_commented_with_their_name(path):
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        for guid in GUID.findall(line):
            assert guid.lower() in BUILT_IN_ROLES, f"{rel(path)}:{lineno}: unknown role id {guid}"
            comment = line.split("//", 1)[1] if "//" in line else ""
            assert BUILT_IN_ROLES[guid.lower()] in comment, f"{rel(path)}:{lineno}: comment must name the role"


def test_app_identity_gets_exactly_the_data_roles_it_needs():
    roles_var = next(v for v in top_level(RBAC, "variable_declaration") if decl_name(v) == "roles")
    role_keys = {key: string_value(value) for key, value in props(named(roles_var)[-1]).items()}
    app_roles = set()
    for decl in resources(RBAC, "Microsoft.Authorization/roleAssignments"):
        obj = body(decl)
        if text(get(obj, "properties.principalId")) != "appPrincipalId":
            continue
        role_arg = text(named(named(get(obj, "name"), "arguments")[0])[2])
        if role_arg.startswith("roles."):
            app_roles.add(BUILT_IN_ROLES[role_keys[role_arg.removeprefix("roles.")]])
        else:  # a loop over a variable listing role keys
            loop = named(decl)[-1]
            listing = text(named(loop)[1])
            var = next(v for v in top_level(RBAC, "variable_declaration") if decl_name(v) == listing)
            app_roles |= {BUILT_IN_ROLES[role_keys[k]] for k in re.findall(r"roles\.(\w+)", text(var))}
    assert app_roles == {
        "Storage Blob Data Owner",
        "Storage Table Data Contributor",
        "Storage Queue Data Contributor",  # conditional: grantQueueDataAccess
        "Key Vault Secrets User",
        "Monitoring Metrics Publisher",
        "Cognitive Services OpenAI User",  # conditional: an OpenAI account is deployed
    }


def test_role_assignments_are_scoped_to_single_resources():
    existing = {decl_name(d) for d in top_level(RBAC, "resource_declaration") if any(c.type == "existing" for c in d.children)}
    for decl in resources(RBAC, "Microsoft.Authorization/roleAssignments"):
        scope = get(body(decl), "scope")
        assert scope is not None and text(scope) in existing, f"{decl_name(decl)}: scope must be one resource, not a group or subscription"


# --------------------------------------------------------------------------- secrets

SECRET_TEXT = re.compile(r"listKeys|listKey\(|listConnectionStrings|listAccountSas|listServiceSas|AccountKey=|SharedAccessSignature=|primaryKey|secondaryKey", re.I)
SECRET_NAME = re.compile(r"(password|secret|apikey|api_key|accountkey|sas|token|connectionstring)$", re.I)


@pytest.mark.parametrize("path", BICEP_FILES, ids=ids)
def test_no_keys_are_read_and_no_secret_is_an_output_or_default(path):
    assert not SECRET_TEXT.search(path.read_text()), "keys must never be listed or embedded"
    for out in top_level(path, "output_declaration"):
        assert "secure" not in decorators_of(out), f"@secure output {decl_name(out)}"
        value = text(named(out)[-1])
        assert not re.search(r"ConnectionString|InstrumentationKey", value, re.I), decl_name(out)
    for param in top_level(path, "parameter_declaration"):
        assert not SECRET_NAME.search(decl_name(param)), f"secret-looking parameter {decl_name(param)}"


def test_application_insights_connection_string_only_feeds_its_app_setting():
    for path in BICEP_FILES:
        for node in walk(tree(path).root_node):
            if node.type == "member_expression" and text(node).endswith(".ConnectionString"):
                prop = node.parent
                assert prop.type == "object_property" and prop_key(prop) == "APPLICATIONINSIGHTS_CONNECTION_STRING"


# --------------------------------------------------------------------------- security settings

API = INFRA / "app" / "api.bicep"


def test_function_app_is_flex_consumption_python_313_https_only():
    plan = body(the_resource(API, "Microsoft.Web/serverfarms@"))
    assert literal(get(plan, "sku.name")) == "FC1"
    assert literal(get(plan, "sku.tier")) == "FlexConsumption"
    assert literal(get(plan, "properties.reserved")) is True

    site_decl = next(d for d in resources(API, "Microsoft.Web/sites@"))
    site = body(site_decl)
    assert "linux" in literal(get(site, "kind"))
    assert literal(get(site, "properties.httpsOnly")) is True
    assert literal(get(site, "properties.siteConfig.minTlsVersion")) == "1.2"
    assert literal(get(site, "properties.siteConfig.ftpsState")) == "Disabled"
    assert literal(get(site, "properties.functionAppConfig.runtime.name")) == "python"
    assert literal(get(site, "properties.functionAppConfig.runtime.version")) == "3.13"
    assert literal(get(site, "identity.type")) == "UserAssigned"
    deployment = get(site, "properties.functionAppConfig.deployment.storage")
    assert literal(get(deployment, "type")) == "blobContainer"
    assert literal(get(deployment, "authentication.type")) == "UserAssignedIdentity"
    scale = get(site, "properties.functionAppConfig.scaleAndConcurrency")
    assert get(scale, "instanceMemoryMB") is not None and get(scale, "maximumInstanceCount") is not None
    assert "'azd-service-name': 'api'" in text(get(site, "tags"))


def test_basic_auth_publishing_is_disabled_for_ftp_and_scm():
    policies = resources(API, "basicPublishingCredentialsPolicies")
    assert {literal(get(body(p), "name")): literal(get(body(p), "properties.allow")) for p in policies} == {
        "ftp": False,
        "scm": False,
    }


def app_settings_keys() -> set[str]:
    config = next(d for d in resources(API, "config") if literal(get(body(d), "name")) == "appsettings")
    keys = {prop_key(p) for p in walk(get(body(config), "properties")) if p.type == "object_property"}
    api_module = next(m for m in top_level(MAIN, "module_declaration") if decl_name(m) == "api")
    gateway = get(body(api_module), "params.gatewaySettings")
    keys |= {prop_key(p) for p in walk(gateway) if p.type == "object_property"}
    return keys


def test_app_settings_the_gateway_reads_are_set():
    assert GATEWAY_APP_SETTINGS <= app_settings_keys(), GATEWAY_APP_SETTINGS - app_settings_keys()


def test_identity_based_storage_and_entra_telemetry_settings():
    config = next(d for d in resources(API, "config") if literal(get(body(d), "name")) == "appsettings")
    source = text(config)
    assert re.search(r"AzureWebJobsStorage__credential: 'managedidentity'", source)
    assert re.search(r"APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=\$\{identityClientId\};Authorization=AAD'", source)
    assert re.search(r"PYTHON_ENABLE_INIT_INDEXING: '1'", source)
    assert "primaryEndpoints.table" in source


def test_flex_unsupported_app_settings_are_absent():
    for path in BICEP_FILES:
        keys = {prop_key(p) for p in walk(tree(path).root_node) if p.type == "object_property"}
        assert not keys & FLEX_UNSUPPORTED_SETTINGS, f"{rel(path)}: {keys & FLEX_UNSUPPORTED_SETTINGS}"


def test_storage_account_has_no_shared_keys_or_public_blobs():
    account = body(the_resource(INFRA / "app" / "storage.bicep", "Microsoft.Storage/storageAccounts@"))
    assert literal(get(account, "properties.allowSharedKeyAccess")) is False
    assert literal(get(account, "properties.allowBlobPublicAccess")) is False
    assert literal(get(account, "properties.minimumTlsVersion")) == "TLS1_2"
    assert literal(get(account, "properties.supportsHttpsTrafficOnly")) is True


def test_tables_and_deployment_container_are_created():
    storage = INFRA / "app" / "storage.bicep"
    assert resources(storage, "tables") and resources(storage, "containers")
    assert literal(get(body(the_resource(storage, "containers")), "properties.publicAccess")) == "None"
    main = MAIN.read_text()
    assert "'llmbreakers'" in main and "'llmusage'" in main


def test_key_vault_is_rbac_only_with_soft_delete_and_purge_protection_from_a_parameter():
    vault_file = INFRA / "app" / "keyvault.bicep"
    vault = body(the_resource(vault_file, "Microsoft.KeyVault/vaults@"))
    assert literal(get(vault, "properties.enableRbacAuthorization")) is True
    assert literal(get(vault, "properties.enableSoftDelete")) is True
    assert "enablePurgeProtection" in text(get(vault, "properties.enablePurgeProtection"))
    assert "publicNetworkAccess" == text(get(vault, "properties.publicNetworkAccess"))
    kv_module = next(m for m in top_level(MAIN, "module_declaration") if decl_name(m) == "keyVault")
    assert text(get(body(kv_module), "params.enablePurgeProtection")) == "keyVaultEnablePurgeProtection"
    assert not resources(vault_file, "Microsoft.KeyVault/vaults/secrets")


def test_purge_protection_is_on_in_prod_only():
    values = {env: env_parameters(env).get("keyVaultEnablePurgeProtection") for env in ENV_PARAMETER_FILES}
    assert values == {"dev": False, "staging": False, "prod": True}


def test_local_auth_is_disabled_on_application_insights_and_openai():
    insights = body(the_resource(INFRA / "app" / "monitoring.bicep", "Microsoft.Insights/components@"))
    assert literal(get(insights, "properties.DisableLocalAuth")) is True
    assert get(insights, "properties.WorkspaceResourceId") is not None
    openai = body(the_resource(INFRA / "app" / "openai.bicep", "Microsoft.CognitiveServices/accounts@"))
    assert literal(get(openai, "kind")) == "OpenAI"
    assert literal(get(openai, "properties.disableLocalAuth")) is True
    assert get(openai, "properties.customSubDomainName") is not None


def test_openai_is_optional_and_off_by_default():
    module = next(m for m in top_level(MAIN, "module_declaration") if decl_name(m) == "openAi")
    assert named(module)[-1].type == "if_statement"
    assert literal(named(params_of(MAIN)["deployAzureOpenAi"])[-1]) is False


def test_names_come_from_abbreviations_and_a_resource_token():
    source = MAIN.read_text()
    assert "toLower(uniqueString(subscription().id, environmentName, location))" in source
    assert "loadJsonContent('abbreviations.json')" in source
    abbreviations = json.loads((INFRA / "abbreviations.json").read_text())
    used = set(re.findall(r"abbrs\.(\w+)", source))
    assert used <= set(abbreviations), used - set(abbreviations)
    assert "'azd-env-name': environmentName" in source


def test_outputs_give_the_next_steps_what_they_need():
    outputs = {decl_name(o) for o in top_level(MAIN, "output_declaration")}
    assert {
        "AZURE_LOCATION",
        "AZURE_TENANT_ID",
        "AZURE_RESOURCE_GROUP",
        "AZURE_FUNCTION_APP_NAME",
        "SERVICE_API_NAME",
        "SERVICE_API_URI",
        "AZURE_KEY_VAULT_NAME",
        "AZURE_KEY_VAULT_ENDPOINT",
    } <= outputs


# --------------------------------------------------------------------------- parameter files


def parameters(path: Path) -> dict:
    data = json.loads(path.read_text())
    return data["parameters"]


def env_parameters(env: str) -> dict:
    return {k: v.get("value") for k, v in parameters(ENV_PARAMETER_FILES[env]).items()}


SECRET_VALUE = re.compile(r"AccountKey=|SharedAccessSignature|sig=|sk-[A-Za-z0-9]{10,}|-----BEGIN|[A-Za-z0-9+/]{40,}={0,2}")


@pytest.mark.parametrize("path", PARAMETER_FILES, ids=[rel(p) for p in PARAMETER_FILES])
def test_parameter_files_name_only_declared_parameters_and_hold_no_secrets(path):
    declared_params = params_of(MAIN)
    given = parameters(path)
    assert set(given) <= set(declared_params), set(given) - set(declared_params)
    required = {n for n, p in declared_params.items() if not has_default(p)}
    assert required <= set(given), required - set(given)
    for name, entry in given.items():
        assert "reference" not in entry, f"{name}: Key Vault references are not needed here"
        assert not SECRET_VALUE.search(json.dumps(entry["value"])), f"{name} looks like a secret"
        assert not SECRET_NAME.search(name)


@pytest.mark.parametrize("env,sample", [("dev", "development"), ("staging", "staging"), ("prod", "production")])
def test_each_environment_points_at_its_routing_config(env, sample):
    path = env_parameters(env)["routingConfigPath"]
    assert path == f"shared/config/samples/{sample}.json"
    samples = ROOT / "shared" / "config" / "samples"
    if not any(samples.glob("*.json")):
        pytest.skip("routing config samples not written yet")
    assert (ROOT / path).is_file(), f"{path} does not exist"


@pytest.mark.parametrize("env", list(ENV_PARAMETER_FILES))
def test_keyless_azure_openai_providers_have_their_deployments(env):
    """A provider using Entra ID against Azure OpenAI needs this template's (keyless) account and
    the deployment it names; one using a key cannot use this account (local auth is off)."""
    params = env_parameters(env)
    config_path = ROOT / params["routingConfigPath"]
    if not config_path.is_file():
        pytest.skip("routing config samples not written yet")
    providers = json.loads(config_path.read_text()).get("providers", {}).values()
    azure = [p for p in providers if p.get("kind") == "azure_openai"]
    keyless = {p.get("deployment") for p in azure if p.get("auth") == "entra_id"}
    if params.get("deployAzureOpenAi"):
        deployed = {d["name"] for d in params.get("azureOpenAiDeployments", [])}
        assert keyless <= deployed, f"{env}: deployments missing for {keyless - deployed}"
    else:
        assert not keyless, f"{env}: entra_id Azure OpenAI providers but deployAzureOpenAi is false"


def test_azd_parameters_use_environment_variables():
    given = parameters(INFRA / "main.parameters.json")
    assert given["environmentName"]["value"] == "${AZURE_ENV_NAME}"
    assert given["location"]["value"] == "${AZURE_LOCATION}"
    assert given["principalId"]["value"] == "${AZURE_PRINCIPAL_ID}"


# --------------------------------------------------------------------------- packaging


def funcignore_patterns() -> list[str]:
    lines = (ROOT / ".funcignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def is_ignored(relpath: str, patterns: list[str]) -> bool:
    """A gitignore-like match: enough for the plain patterns .funcignore uses (no negation)."""
    parts = relpath.split("/")
    for pattern in patterns:
        assert not pattern.startswith("!"), "negated patterns are not modelled by this check"
        pat = pattern.rstrip("/").lstrip("/")
        if "/" in pat:
            if fnmatch.fnmatch(relpath, pat) or relpath.startswith(pat + "/"):
                return True
        elif any(fnmatch.fnmatch(part, pat) for part in parts):
            return True
    return False


@pytest.mark.parametrize(
    "relpath",
    [
        "tests/test_infra.py",
        "infra/main.bicep",
        "devhost/server.py",
        "bench/run.py",
        "docs/deployment.md",
        "scripts/setup.sh",
        ".ci/check.sh",
        ".venv/bin/python",
        "node_modules/azurite/package.json",
        "local.settings.json",
        "__azurite_db_table__.json",
        "shared/__pycache__/x.cpython-313.pyc",
        ".git/HEAD",
        ".gitignore",
        ".vscode/settings.json",
        "package.json",
        "package-lock.json",
        "requirements-dev.txt",
    ],
)
def test_funcignore_excludes_development_files(relpath):
    assert is_ignored(relpath, funcignore_patterns())


@pytest.mark.parametrize(
    "relpath",
    [
        "function_app.py",
        "host.json",
        "requirements.txt",
        "shared/__init__.py",
        "shared/storage.py",
        "shared/config/schema.json",
        "shared/config/samples/production.json",
        "shared/config/samples/staging.json",
        "shared/config/samples/development.json",
    ],
)
def test_funcignore_keeps_the_app(relpath):
    assert not is_ignored(relpath, funcignore_patterns())


def test_azure_yaml_declares_the_api_service():
    source = (ROOT / "azure.yaml").read_text()
    match = re.search(r"^services:\n  api:\n((?:    .*\n)+)", source, re.M)
    assert match, "azure.yaml needs a services.api block"
    fields = dict(re.findall(r"^    (\w+): *(\S+)", match.group(1), re.M))
    assert fields == {"project": ".", "language": "python", "host": "function"}
