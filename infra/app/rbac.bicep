// Every role assignment of the deployment, in one place.
//
// Each assignment is named guid(<scope>.id, <principal>, <role>) so a redeploy is idempotent and
// the same role on another scope or for another principal gets its own name. All are data-plane
// roles on single resources: nothing at resource-group or subscription scope, no Owner,
// Contributor or key-listing role.

param storageAccountName string
param keyVaultName string
param applicationInsightsName string

@description('Name of the Azure OpenAI account, or empty when none is deployed.')
param openAiAccountName string

@description('Principal (object) id of the gateway\'s user-assigned managed identity.')
param appPrincipalId string

@description('Grant Storage Queue Data Contributor to the app. Only queue-based triggers/bindings (blob trigger receipts, Durable Functions) need it; the gateway is HTTP-only, so off by default.')
param grantQueueDataAccess bool

@description('Object id of a developer (or CI principal) given the data roles for local work and for uploading provider keys. Empty: none.')
param developerPrincipalId string

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param developerPrincipalType string

// Built-in role definition ids (identical in every tenant).
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b' // Storage Blob Data Owner
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe' // Storage Blob Data Contributor
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3' // Storage Table Data Contributor
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88' // Storage Queue Data Contributor
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6' // Key Vault Secrets User
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7' // Key Vault Secrets Officer
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb' // Monitoring Metrics Publisher
  cognitiveServicesOpenAiUser: '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd' // Cognitive Services OpenAI User
}

var hasDeveloper = !empty(developerPrincipalId)
var hasOpenAi = !empty(openAiAccountName)

// App identity on the storage account:
//   Blob Data Owner   - AzureWebJobsStorage (host locks, function keys in azure-webjobs-secrets) and
//                       the Flex deployment container; the Functions docs require Owner for host storage.
//   Table Data Contributor - the gateway's llmbreakers and llmusage tables (read/insert/ETag update).
//   Queue Data Contributor - only when grantQueueDataAccess (see the parameter).
var appStorageRoles = concat([
  roles.storageBlobDataOwner
  roles.storageTableDataContributor
], grantQueueDataAccess ? [
  roles.storageQueueDataContributor
] : [])

// Developer on the storage account: read/write blobs and tables for local runs and inspection,
// without the Owner rights (ACLs, leases on the host's containers) the runtime needs.
var developerStorageRoles = [
  roles.storageBlobDataContributor
  roles.storageTableDataContributor
]

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource openAi 'Microsoft.CognitiveServices/accounts@2024-10-01' existing = if (hasOpenAi) {
  name: openAiAccountName
}

resource appStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in appStorageRoles: {
  name: guid(storage.id, appPrincipalId, roleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}]

// App identity reads provider API keys; it cannot list, write or delete them.
resource appVaultSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, roles.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// App identity sends telemetry with Entra ID (the component has local auth disabled).
resource appTelemetry 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, appPrincipalId, roles.monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// App identity calls the model deployments (inference only; no management, no keys).
resource appOpenAi 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasOpenAi) {
  name: guid(openAi.id, appPrincipalId, roles.cognitiveServicesOpenAiUser)
  scope: openAi
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.cognitiveServicesOpenAiUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource developerStorage 'Microsoft.Authorization/roleAssignments@2022-04-01' = [for roleId in developerStorageRoles: if (hasDeveloper) {
  name: guid(storage.id, developerPrincipalId, roleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    principalId: developerPrincipalId
    principalType: developerPrincipalType
  }
}]

// Developer uploads and rotates provider keys (docs/deployment.md); Officer also reads them.
resource developerVaultSecrets 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasDeveloper) {
  name: guid(vault.id, developerPrincipalId, roles.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.keyVaultSecretsOfficer)
    principalId: developerPrincipalId
    principalType: developerPrincipalType
  }
}

resource developerOpenAi 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (hasDeveloper && hasOpenAi) {
  name: guid(openAi.id, developerPrincipalId, roles.cognitiveServicesOpenAiUser)
  scope: openAi
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.cognitiveServicesOpenAiUser)
    principalId: developerPrincipalId
    principalType: developerPrincipalType
  }
}
