// LLM routing gateway: one environment (dev, staging or prod) in its own resource group.
//
// targetScope is the subscription so that one command creates the resource group too (and azd
// works unchanged): `az deployment sub create --location <region> --template-file infra/main.bicep
// --parameters infra/env/<env>.parameters.json`. Everything else is deployed into that resource
// group through the modules under ./app. No secret is a parameter or an output: the app reaches
// storage, Key Vault, Application Insights and Azure OpenAI with its managed identity.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Environment name (e.g. llmgw-dev): names the resource group and seeds the unique resource token.')
param environmentName string

@minLength(1)
@description('Region for every resource. Must offer the Flex Consumption plan.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group name; empty: rg-<environmentName>.')
param resourceGroupName string = ''

@description('Path of the routing config inside the deployed package, read by the gateway as LLM_ROUTING_CONFIG.')
param routingConfigPath string = 'shared/config/samples/development.json'

@description('Object id of a developer or CI principal to grant the data roles (blob, table, Key Vault Secrets Officer, OpenAI user). Empty: none.')
param principalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param principalType string = 'User'

@description('Key Vault purge protection. Irreversible once on: true in prod only.')
param keyVaultEnablePurgeProtection bool = false

@minValue(7)
@maxValue(90)
param keyVaultSoftDeleteRetentionInDays int = 7

@allowed([
  'Enabled'
  'Disabled'
])
@description('Key Vault public network access. Disabled needs VNet integration and a private endpoint, not part of this template.')
param keyVaultPublicNetworkAccess string = 'Enabled'

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param storageSkuName string = 'Standard_LRS'

@minValue(30)
@maxValue(730)
param logRetentionInDays int = 30

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@minValue(0)
param alwaysReadyInstanceCount int = 0

@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int = 16

@description('Grant the app Storage Queue Data Contributor; only needed if queue-based triggers are added.')
param grantQueueDataAccess bool = false

@description('Create an Azure OpenAI account (keys disabled) and give the app Cognitive Services OpenAI User on it.')
param deployAzureOpenAi bool = false

@description('Region of the Azure OpenAI account; empty: location.')
param azureOpenAiLocation string = ''

@description('Azure OpenAI model deployments: [{ name, model, version, skuName?, capacity? }].')
param azureOpenAiDeployments array = []

var abbrs = loadJsonContent('abbreviations.json')
var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = '${abbrs.webSitesFunctions}llmgw-${resourceToken}'
var deploymentContainerName = 'app-package-${resourceToken}'
var breakerTable = 'llmbreakers'
var usageTable = 'llmusage'
var openAiName = '${abbrs.cognitiveServicesOpenAi}${resourceToken}'
// Deterministic (customSubDomainName = account name), so no conditional module output is read.
var openAiEndpoint = 'https://${openAiName}.openai.azure.com/'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: !empty(resourceGroupName) ? resourceGroupName : '${abbrs.resourcesResourceGroups}${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: '${abbrs.managedIdentityUserAssignedIdentities}llmgw-${resourceToken}'
    location: location
    tags: tags
  }
}

module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: '${abbrs.storageStorageAccounts}${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
    tableNames: [
      breakerTable
      usageTable
    ]
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: '${abbrs.operationalInsightsWorkspaces}${resourceToken}'
    applicationInsightsName: '${abbrs.insightsComponents}${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionInDays
  }
}

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: '${abbrs.keyVaultVaults}${resourceToken}'
    location: location
    tags: tags
    enablePurgeProtection: keyVaultEnablePurgeProtection
    softDeleteRetentionInDays: keyVaultSoftDeleteRetentionInDays
    publicNetworkAccess: keyVaultPublicNetworkAccess
  }
}

module openAi 'app/openai.bicep' = if (deployAzureOpenAi) {
  name: 'openai'
  scope: rg
  params: {
    name: openAiName
    location: !empty(azureOpenAiLocation) ? azureOpenAiLocation : location
    tags: tags
    deployments: azureOpenAiDeployments
  }
}

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    openAiAccountName: deployAzureOpenAi ? openAiName : ''
    appPrincipalId: identity.outputs.principalId
    grantQueueDataAccess: grantQueueDataAccess
    developerPrincipalId: principalId
    developerPrincipalType: principalType
  }
  dependsOn: [
    openAi
  ]
}

module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: '${abbrs.webServerFarms}${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyInstanceCount: alwaysReadyInstanceCount
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    gatewaySettings: union({
      LLM_ROUTING_CONFIG: routingConfigPath
      LLM_KEYVAULT_URL: keyVault.outputs.uri
      LLM_BREAKER_TABLE: breakerTable
      LLM_USAGE_TABLE: usageTable
    }, deployAzureOpenAi ? {
      AZURE_OPENAI_ENDPOINT: openAiEndpoint
    } : {})
  }
  // Grants first, so the app's first start can already reach storage, the vault and telemetry.
  dependsOn: [
    rbac
  ]
}

// What the next steps need (docs/deployment.md). Names, endpoints and ids only: no secrets.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = api.outputs.name
output AZURE_FUNCTION_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = api.outputs.uri
output SERVICE_API_ENDPOINT string = '${api.outputs.uri}/api/v1'
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_KEY_VAULT_ENDPOINT string = keyVault.outputs.uri
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output AZURE_APP_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_OPENAI_ENDPOINT string = deployAzureOpenAi ? openAiEndpoint : ''
output LLM_ROUTING_CONFIG string = routingConfigPath
