// The gateway: a Linux function app on the Flex Consumption plan (FC1), Python 3.13.
//
// On Flex Consumption the language and version live in `functionAppConfig.runtime`; the app
// settings FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION are not supported there and
// are deliberately absent (as are WEBSITE_RUN_FROM_PACKAGE and WEBSITE_CONTENT*).

param name string
param planName string
param location string
param tags object

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity (not a secret): selects it for storage, telemetry and the SDKs.')
param identityClientId string

param storageAccountName string
param deploymentContainerName string
param applicationInsightsName string

@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int

@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@description('Always-ready instances for the HTTP group (0 = scale to zero, accept cold starts).')
@minValue(0)
param alwaysReadyInstanceCount int

@description('Concurrent HTTP requests per instance. The gateway is async and mostly waits on upstream models, so it is far above the Python default of 1.')
@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int

@description('The gateway\'s own settings (LLM_*, AZURE_OPENAI_ENDPOINT); merged with the platform settings below.')
param gatewaySettings object

var alwaysReady = alwaysReadyInstanceCount > 0 ? [
  {
    name: 'http'
    instanceCount: alwaysReadyInstanceCount
  }
] : []

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true // Linux
  }
}

resource functionApp 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: alwaysReady
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.13'
      }
    }
  }

  // Publishing goes through Microsoft Entra ID (az / func / azd); no FTP or SCM basic-auth credentials.
  resource ftpBasicAuth 'basicPublishingCredentialsPolicies' = {
    name: 'ftp'
    properties: {
      allow: false
    }
  }

  resource scmBasicAuth 'basicPublishingCredentialsPolicies' = {
    name: 'scm'
    properties: {
      allow: false
    }
  }

  resource appSettings 'config' = {
    name: 'appsettings'
    properties: union(gatewaySettings, {
      // Functions host storage through the managed identity: no connection string, no key.
      AzureWebJobsStorage__accountName: storage.name
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identityClientId
      // The gateway's tables (breaker state, usage ledger) use the same account and identity.
      AzureWebJobsStorage__tableServiceUri: storage.properties.primaryEndpoints.table
      // Azure SDK credentials (DefaultAzureCredential / ManagedIdentityCredential) pick this identity.
      AZURE_CLIENT_ID: identityClientId
      // The connection string holds only the (non-secret) instrumentation key and endpoints;
      // ingestion is authenticated with the identity because local auth is off.
      APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsights.properties.ConnectionString
      APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
      // Required by the HTTP streams feature (azurefunctions-extensions-http-fastapi).
      PYTHON_ENABLE_INIT_INDEXING: '1'
      // The worker joins the host's trace context and exports its own telemetry
      // (host.json telemetryMode OpenTelemetry), so host and worker traces correlate.
      PYTHON_ENABLE_OPENTELEMETRY: 'true'
    })
  }
}

output name string = functionApp.name
output defaultHostName string = functionApp.properties.defaultHostName
output uri string = 'https://${functionApp.properties.defaultHostName}'
